package authn

import (
	"context"
	"net/http"
	"net/url"
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
// /internal/v1/sessions/{id}; all reached through Consul discovery. The feed is streamed: an idle follower holds
// one question open with heartbeats (FeedHeartbeat) and asks again every FeedStreamWait.
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
	feed := func(ctx context.Context, fq FeedQuestion, alive func()) (FeedAnswer, error) {
		q := url.Values{"wait": {fq.Wait.String()}, "follower": {follower}, FeedStreamParam: {"true"}}
		if fq.Cursor != "" {
			q.Set("cursor", fq.Cursor)
		}
		if fq.Ack != "" {
			q.Set("ack", fq.Ack)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		resp, err := c.Do(ctx, AuthService, svcclient.Request{Method: http.MethodGet, Path: "/internal/v1/revocations?" + q.Encode(),
			Header: http.Header{"Accept": {"application/x-ndjson"}}, Stream: true})
		if err != nil {
			return FeedAnswer{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return FeedAnswer{}, svcclient.AnswerError(AuthService, resp)
		}
		return ReadFeedStream(resp.Body, alive, cancel)
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
