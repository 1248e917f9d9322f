package authn

import (
	"context"
	"net/http"
	"net/url"

	"github.com/go-jose/go-jose/v4"

	"shoplab/internal/svcclient"
)

// AuthService is the Consul name of the auth service.
const AuthService = "auth"

// NewRemote returns a verifier for services other than auth: keys come from auth's GET /v1/jwks and session
// state from its internal GET /internal/v1/sessions/{id}, both reached through Consul discovery.
func NewRemote(c *svcclient.Client) *Verifier {
	c.Watch(AuthService)
	keys := func(ctx context.Context) (jose.JSONWebKeySet, error) {
		var set jose.JSONWebKeySet
		_, err := c.CallJSON(ctx, AuthService, http.MethodGet, "/v1/jwks", nil, nil, &set)
		return set, err
	}
	session := func(ctx context.Context, id string) (bool, error) {
		var out struct {
			Active bool `json:"active"`
		}
		status, err := c.CallJSON(ctx, AuthService, http.MethodGet, "/internal/v1/sessions/"+url.PathEscape(id), nil, nil, &out)
		if status == http.StatusNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return out.Active, nil
	}
	return NewVerifier(keys, session)
}
