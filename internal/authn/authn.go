// Package authn verifies shoplab session tokens: Ed25519-signed JWTs issued by the auth service. A verifier
// checks the signature against auth's published keys (JWKS, cached, refreshed when an unknown key id shows up),
// the issuer, audience and expiry, and then asks the session source whether the session is still active, so a
// token is refused everywhere the moment its user logs out.
package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer and Audience are the iss and aud of every session token.
const (
	Issuer   = "shoplab-auth"
	Audience = "shoplab"
)

// Verification failures. Each answers 401 except ErrUnavailable (503).
var (
	ErrMissing     = errors.New("missing bearer token")
	ErrMalformed   = errors.New("malformed token")
	ErrBadSig      = errors.New("token signature does not verify")
	ErrExpired     = errors.New("token expired")
	ErrRevoked     = errors.New("token revoked")
	ErrUnavailable = errors.New("cannot check the token now")
)

// Claims is what a verified token says about its holder.
type Claims struct {
	UserID    string
	SessionID string
	Expiry    time.Time
}

// KeySource fetches the current JSON Web Key Set.
type KeySource func(ctx context.Context) (jose.JSONWebKeySet, error)

// SessionCheck tells whether a session is still active (false once logged out or unknown).
type SessionCheck func(ctx context.Context, sessionID string) (bool, error)

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	keys    KeySource
	session SessionCheck
	now     func() time.Time
	// MinRefresh is the least time between two key fetches triggered by unknown key ids.
	minRefresh time.Duration

	mu        sync.Mutex
	set       map[string]jose.JSONWebKey
	fetchedAt time.Time

	revokedMu sync.Mutex
	revoked   map[string]time.Time // session id → token expiry; revocation is final
}

// NewVerifier returns a verifier over keys and session.
func NewVerifier(keys KeySource, session SessionCheck) *Verifier {
	return &Verifier{keys: keys, session: session, now: time.Now, minRefresh: 5 * time.Second, revoked: map[string]time.Time{}}
}

// Verify checks raw and returns its claims.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if raw == "" {
		return Claims{}, ErrMissing
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return Claims{}, ErrMalformed
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return Claims{}, err
	}
	var c jwt.Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return Claims{}, ErrBadSig
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{Audience}, Time: v.now()}, 30*time.Second)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, ErrExpired
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	case c.Subject == "" || c.ID == "" || c.Expiry == nil:
		return Claims{}, fmt.Errorf("%w: sub, jti and exp are required", ErrMalformed)
	}
	claims := Claims{UserID: c.Subject, SessionID: c.ID, Expiry: c.Expiry.Time()}
	if v.isRevoked(claims.SessionID) {
		return Claims{}, ErrRevoked
	}
	active, err := v.session(ctx, claims.SessionID)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !active {
		v.markRevoked(claims.SessionID, claims.Expiry)
		return Claims{}, ErrRevoked
	}
	return claims, nil
}

func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.set[kid]; ok {
		return k, nil
	}
	if !v.fetchedAt.IsZero() && v.now().Sub(v.fetchedAt) < v.minRefresh {
		return jose.JSONWebKey{}, ErrBadSig
	}
	set, err := v.keys(ctx)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("%w: fetch signing keys: %v", ErrUnavailable, err)
	}
	v.fetchedAt = v.now()
	v.set = make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() {
			v.set[k.KeyID] = k
		}
	}
	if k, ok := v.set[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, ErrBadSig
}

func (v *Verifier) isRevoked(id string) bool {
	v.revokedMu.Lock()
	defer v.revokedMu.Unlock()
	_, ok := v.revoked[id]
	return ok
}

func (v *Verifier) markRevoked(id string, exp time.Time) {
	v.revokedMu.Lock()
	defer v.revokedMu.Unlock()
	if len(v.revoked) > 10000 {
		now := v.now()
		for k, e := range v.revoked {
			if e.Before(now) {
				delete(v.revoked, k)
			}
		}
	}
	v.revoked[id] = exp
}

// BearerToken returns the token of an "Authorization: Bearer …" header, or "".
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

type ctxKey struct{}

// WithClaims returns ctx carrying c.
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the claims Require put in ctx.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(Claims)
	return c, ok
}
