package authn

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/svcclient"
)

// AuthService is the Consul name of the auth service.
const AuthService = "auth"

// NewRemote returns a verifier for services other than auth: keys come from auth's GET /v1/jwks (fetched again
// every refresh, until ctx ends) and session state from its internal GET /internal/v1/sessions/{id}, both
// reached through Consul discovery.
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
	if refresh > 0 {
		log = log.Named("authn")
		go v.RefreshEvery(ctx, refresh, func(err error) {
			log.Warn("refreshing auth's signing keys failed; keeping the known ones", "error", err)
		})
	}
	return v
}
