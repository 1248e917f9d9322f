package authn

import (
	"errors"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/web"
)

// Require returns middleware that lets a request through only with a valid, active bearer token, and puts its
// claims in the request context.
func Require(v *Verifier, log hclog.Logger) func(http.Handler) http.Handler {
	log = log.Named("authn")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := v.Verify(r.Context(), BearerToken(r))
			if err != nil {
				web.WriteError(w, r, log, AsHTTPError(err))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(r.Context(), c)))
		})
	}
}

// RequireRole returns middleware that lets a request through only with a valid, active bearer token whose
// holder has role: no or a bad token is 401, a token without the role 403 forbidden.
func RequireRole(v *Verifier, log hclog.Logger, role string) func(http.Handler) http.Handler {
	log = log.Named("authn")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := v.Verify(r.Context(), BearerToken(r))
			if err == nil && !c.HasRole(role) {
				err = ErrForbidden
			}
			if err != nil {
				web.WriteError(w, r, log, AsHTTPError(err))
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(r.Context(), c)))
		})
	}
}

// AsHTTPError maps a verification failure to its API.md answer.
func AsHTTPError(err error) error {
	switch {
	case errors.Is(err, ErrMissing):
		return web.Errorf(http.StatusUnauthorized, "missing_token", "an Authorization: Bearer token is required")
	case errors.Is(err, ErrExpired):
		return web.Errorf(http.StatusUnauthorized, "token_expired", "the token has expired; log in again")
	case errors.Is(err, ErrRevoked):
		return web.Errorf(http.StatusUnauthorized, "token_revoked", "the token was revoked (logged out); log in again")
	case errors.Is(err, ErrForbidden):
		return web.Errorf(http.StatusForbidden, "forbidden", "this needs the %s role", RoleAdmin)
	case errors.Is(err, ErrUnavailable):
		return web.Errorf(http.StatusServiceUnavailable, "auth_unavailable", "cannot verify the token right now; try again")
	default:
		return web.Errorf(http.StatusUnauthorized, "invalid_token", "the token is not valid")
	}
}
