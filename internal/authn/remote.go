package authn

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/ids"
	"shoplab/internal/svcclient"
)

// AuthService is the Consul name of the auth service.
const AuthService = "auth"

// NewRemote returns a verifier for services other than auth: keys come from auth's GET /v1/jwks (fetched again
// every refresh, until ctx ends), revoked sessions from its internal revocation feed (followed until ctx
// ends), and — while that feed is not current — session state from its internal GET
// /internal/v1/sessions/{id}; all reached through Consul discovery.
func NewRemote(ctx context.Context, c *svcclient.Client, refresh time.Duration, log hclog.Logger) *Verifier {
	c.Watch(AuthService)
	keys := func(ctx context.Context) (jose.JSONWebKeySet, error) {
		var set jose.JSONWebKeySet
		_, err := c.CallJSON(ctx, AuthService, http.MethodGet, "/v1/jwks", nil, nil, &set)
		return set, err
	}
	session := func(ctx context.Context, id string) (string, bool, error) {
		var out struct {
			Active bool   `json:"active"`
			UserID string `json:"user_id"`
		}
		status, err := c.CallJSON(ctx, AuthService, http.MethodGet, "/internal/v1/sessions/"+url.PathEscape(id), nil, nil, &out)
		if status == http.StatusNotFound {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return out.UserID, out.Active, nil
	}
	v := NewVerifier(keys, session, Options{})
	log = log.Named("authn")
	if refresh > 0 {
		go v.RefreshEvery(ctx, refresh, func(err error) {
			log.Warn("refreshing auth's signing keys failed; keeping the known ones", "error", err)
		})
	}
	follower := ids.New("flw")
	feed := func(ctx context.Context, fq FeedQuestion) (FeedAnswer, error) {
		var out FeedAnswer
		q := url.Values{"wait": {fq.Wait.String()}, "follower": {follower}}
		if !fq.Since.IsZero() {
			q.Set("since", strconv.FormatInt(fq.Since.UnixMicro(), 10))
		}
		if fq.Ack != "" {
			q.Set("ack", fq.Ack)
		}
		_, err := c.CallJSON(ctx, AuthService, http.MethodGet, "/internal/v1/revocations?"+q.Encode(), nil, nil, &out)
		return out, err
	}
	var lastErr string
	go v.Follow(ctx, feed, FeedOptions{}, func(err error) {
		if err.Error() != lastErr { // once per kind of failure, not once per retry
			lastErr = err.Error()
			log.Warn("following auth's revocations failed; checking each session with auth meanwhile", "error", err)
		}
	})
	return v
}
