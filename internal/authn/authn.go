// Package authn verifies shoplab session tokens: Ed25519-signed JWTs issued by the auth service. A verifier
// checks the signature against auth's published keys (JWKS: refreshed on a schedule, so retired keys stop
// verifying, and fetched early — at most once per MinRefresh — when a token names a key not seen yet), the
// issuer, audience and expiry, and then whether the session was revoked: against a local set of revoked
// sessions that auth's revocation feed keeps current (Follow), or — while that feed is not known to be
// current — by asking auth whether the session is still active and belongs to the token's user. Either way a
// token is refused everywhere within a second of its user logging out.
package authn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer and Audience are the iss and aud of every session token.
const (
	Issuer   = "shoplab-auth"
	Audience = "shoplab"
)

// RoleAdmin is the role of the shop's operators.
const RoleAdmin = "admin"

// Verification failures. Each answers 401 except ErrUnavailable (503) and ErrForbidden (403).
var (
	ErrMissing     = errors.New("missing bearer token")
	ErrMalformed   = errors.New("malformed token")
	ErrBadSig      = errors.New("token signature does not verify")
	ErrExpired     = errors.New("token expired")
	ErrRevoked     = errors.New("token revoked")
	ErrUnavailable = errors.New("cannot check the token now")
	ErrForbidden   = errors.New("the token lacks the role this needs")
)

// Claims is what a verified token says about its holder.
type Claims struct {
	UserID    string
	SessionID string
	Expiry    time.Time
	Roles     []string
}

// HasRole reports whether the holder has role.
func (c Claims) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// KeySource fetches the current JSON Web Key Set.
type KeySource func(ctx context.Context) (jose.JSONWebKeySet, error)

// SessionCheck tells whether a session is still active (false once logged out, expired or unknown) and whose
// it is.
type SessionCheck func(ctx context.Context, sessionID string) (userID string, active bool, err error)

// Options tunes a verifier; the zero value is sensible.
type Options struct {
	// MinRefresh is the least time between two key fetches triggered by unknown key ids (default 5s).
	MinRefresh time.Duration
	// Leeway is the clock skew allowed on expiry and not-before (default 30s).
	Leeway time.Duration
}

// Verifier checks tokens. It is safe for concurrent use: verifying a token signed with a known key never
// waits for a key fetch.
type Verifier struct {
	keys    KeySource
	session SessionCheck
	now     func() time.Time
	opts    Options

	set       atomic.Pointer[keySet]
	fetchMu   sync.Mutex // one fetch at a time
	fetchedAt atomic.Int64

	revokedMu sync.Mutex
	revoked   map[string]time.Time // session id → token expiry; revocation is final

	verifiedMu sync.RWMutex
	verified   map[string]verified // raw token → its checked claims (verifySignature)

	feedAnswered atomic.Int64 // unix nanoseconds of the revocation feed's last whole answer (Follow)
	maxStale     atomic.Int64 // how old that answer may be for the set alone to decide
}

type keySet map[string]jose.JSONWebKey

// NewVerifier returns a verifier over keys and session.
func NewVerifier(keys KeySource, session SessionCheck, o Options) *Verifier {
	if o.MinRefresh <= 0 {
		o.MinRefresh = 5 * time.Second
	}
	if o.Leeway <= 0 {
		o.Leeway = 30 * time.Second
	}
	return &Verifier{keys: keys, session: session, now: time.Now, opts: o, revoked: map[string]time.Time{}, verified: map[string]verified{}}
}

// privateClaims are the claims beside the registered ones.
type privateClaims struct {
	Roles []string `json:"roles"`
}

// Verify checks raw and returns its claims.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if raw == "" {
		return Claims{}, ErrMissing
	}
	c, pc, err := v.verifySignature(ctx, raw)
	if err != nil {
		return Claims{}, err
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: Issuer, AnyAudience: jwt.Audience{Audience}, Time: v.now()}, v.opts.Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Claims{}, ErrExpired
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	case c.Subject == "" || c.ID == "" || c.Expiry == nil:
		return Claims{}, fmt.Errorf("%w: sub, jti and exp are required", ErrMalformed)
	}
	claims := Claims{UserID: c.Subject, SessionID: c.ID, Expiry: c.Expiry.Time(), Roles: pc.Roles}
	if v.isRevoked(claims.SessionID) {
		return Claims{}, ErrRevoked
	}
	if v.feedFresh() {
		// The set of revoked sessions is current (Follow): the signature already proves who the session
		// belongs to, and auth need not be asked.
		return claims, nil
	}
	owner, active, err := v.session(ctx, claims.SessionID)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !active || owner != claims.UserID {
		v.markRevoked(claims.SessionID, claims.Expiry)
		return Claims{}, ErrRevoked
	}
	return claims, nil
}

// verified is a token whose signature checked out, and with which key.
type verified struct {
	kid string
	c   jwt.Claims
	pc  privateClaims
}

// maxVerified bounds the tokens remembered as verified; past it, the memory starts afresh.
const maxVerified = 10000

// verifySignature parses raw and checks its signature against the published key it names. A token seen
// before is not checked again while that key is still published: an Ed25519 verification is most of what a
// request's authentication costs, and a client sends the same token again and again. Expiry, audience and
// revocation are checked by Verify every time.
func (v *Verifier) verifySignature(ctx context.Context, raw string) (jwt.Claims, privateClaims, error) {
	v.verifiedMu.RLock()
	e, seen := v.verified[raw]
	v.verifiedMu.RUnlock()
	if seen {
		if set := v.set.Load(); set != nil {
			if _, published := (*set)[e.kid]; published {
				return e.c, e.pc, nil
			}
		}
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		return jwt.Claims{}, privateClaims{}, ErrMalformed
	}
	kid := tok.Headers[0].KeyID
	key, err := v.key(ctx, kid)
	if err != nil {
		return jwt.Claims{}, privateClaims{}, err
	}
	var (
		c  jwt.Claims
		pc privateClaims
	)
	if err := tok.Claims(key.Key, &c, &pc); err != nil {
		return jwt.Claims{}, privateClaims{}, ErrBadSig
	}
	v.verifiedMu.Lock()
	if len(v.verified) >= maxVerified {
		v.verified = make(map[string]verified, maxVerified)
	}
	v.verified[raw] = verified{kid: kid, c: c, pc: pc}
	v.verifiedMu.Unlock()
	return c, pc, nil
}

// key returns the published key kid. A known kid is a lock-free map read. An unknown one triggers a fetch,
// unless one ran less than MinRefresh ago (then the token is refused at once).
func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	if set := v.set.Load(); set != nil {
		if k, ok := (*set)[kid]; ok {
			return k, nil
		}
	}
	if v.fetchedRecently() {
		return jose.JSONWebKey{}, ErrBadSig
	}
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	// Another caller may have fetched while this one waited.
	if set := v.set.Load(); set != nil {
		if k, ok := (*set)[kid]; ok {
			return k, nil
		}
	}
	if v.fetchedRecently() {
		return jose.JSONWebKey{}, ErrBadSig
	}
	if err := v.fetch(ctx); err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("%w: fetch signing keys: %v", ErrUnavailable, err)
	}
	if k, ok := (*v.set.Load())[kid]; ok {
		return k, nil
	}
	return jose.JSONWebKey{}, ErrBadSig
}

func (v *Verifier) fetchedRecently() bool {
	at := v.fetchedAt.Load()
	return at != 0 && v.now().Sub(time.Unix(0, at)) < v.opts.MinRefresh
}

// fetch replaces the key set with what the source publishes now (callers hold fetchMu).
func (v *Verifier) fetch(ctx context.Context) error {
	// The time is taken when the fetch ends: while one is in flight, other callers with unknown kids wait for
	// it (on fetchMu) rather than being refused.
	set, err := v.keys(ctx)
	v.fetchedAt.Store(v.now().UnixNano())
	if err != nil {
		return err
	}
	next := make(keySet, len(set.Keys))
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() {
			next[k.KeyID] = k
		}
	}
	v.set.Store(&next)
	return nil
}

// Refresh fetches the key set now, so keys that were retired stop verifying and new ones are known before a
// token needs them.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	return v.fetch(ctx)
}

// RefreshEvery calls Refresh every interval until ctx ends; a failed fetch keeps the keys it had.
func (v *Verifier) RefreshEvery(ctx context.Context, every time.Duration, onError func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := v.Refresh(fctx); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		cancel()
	}
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
