package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/ids"
	"shoplab/internal/web"
)

type createSessionRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type sessionAnswer struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
	User      user   `json:"user"`
}

// decodeCreateSession reads and checks a POST /v1/sessions body.
func decodeCreateSession(r *http.Request) (createSessionRequest, error) {
	var req createSessionRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if req.Email == "" {
		return req, web.BadRequest("email is required")
	}
	if req.Password == "" {
		return req, web.BadRequest("password is required")
	}
	email, err := normalizeEmail(req.Email)
	if err != nil {
		return req, err
	}
	req.Email = email
	return req, nil
}

type sessionCreator interface {
	UserByEmail(ctx context.Context, email string) (user, []byte, error)
	CreateSession(ctx context.Context, id, userID string, expires time.Time) error
}

// handleCreateSession logs a user in. The attempt is counted against the limits first (limiter: a limited
// attempt costs no hashing and gets 429 even with the right password); the right password clears its
// account-and-address count.
func handleCreateSession(log hclog.Logger, store sessionCreator, pw *passwords, iss *issuer, lim *limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeCreateSession(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		ctx := r.Context()
		addr, err := lim.clientAddr(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := lim.takeLogin(ctx, addr, req.Email); err != nil {
			log.Info("login refused: rate limited", "client", addr, "request_id", web.RequestID(ctx))
			writeError(w, r, log, err)
			return
		}
		u, hash, err := store.UserByEmail(ctx, req.Email)
		if err != nil && !errors.Is(err, errNotFound) {
			writeError(w, r, log, err)
			return
		}
		// An unknown email still costs one bcrypt comparison: the answer and its timing are the same.
		ok, err := pw.verify(ctx, hash, req.Password)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !ok {
			log.Info("login refused", "client", addr, "request_id", web.RequestID(ctx))
			writeError(w, r, log, errBadCredentials)
			return
		}
		if err := lim.loggedIn(ctx, addr, req.Email); err != nil {
			writeError(w, r, log, err)
			return
		}
		sessionID := ids.New("ses")
		token, exp, err := iss.issue(u.ID, sessionID, u.Roles, 0)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if err := store.CreateSession(ctx, sessionID, u.ID, exp); err != nil {
			writeError(w, r, log, err)
			return
		}
		log.Info("session created", "user_id", u.ID, "session_id", sessionID)
		web.WriteJSON(w, http.StatusCreated, sessionAnswer{Token: token, ExpiresAt: exp.UTC().Format(time.RFC3339), User: u})
	})
}

type sessionRevoker interface {
	RevokeSession(ctx context.Context, id string) error
}

func handleDeleteSession(log hclog.Logger, store sessionRevoker, settle func(context.Context) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := authn.FromContext(r.Context())
		if err := store.RevokeSession(r.Context(), c.SessionID); err != nil {
			writeError(w, r, log, err)
			return
		}
		// The token is refused everywhere once this answers: wait until the services following the revocation
		// feed have it (a follower that does not answer in time falls back to asking auth within a second).
		if !settle(r.Context()) {
			log.Warn("not every revocation follower acknowledged the logout in time", "session_id", c.SessionID)
		}
		log.Info("session revoked", "user_id", c.UserID, "session_id", c.SessionID)
		w.WriteHeader(http.StatusNoContent)
	})
}

type sessionLookup interface {
	ActiveSession(ctx context.Context, id string) (string, time.Time, error)
}

// handleSessionStatus is the internal revocation check other services' verifiers call: 200 while the session
// is active, 404 once it is revoked, expired or unknown.
func handleSessionStatus(log hclog.Logger, store sessionLookup, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, exp, err := store.ActiveSession(r.Context(), id(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"active": true, "user_id": userID, "expires_at": exp.UTC().Format(time.RFC3339)})
	})
}

type keyLister interface {
	PublicKeys(ctx context.Context) ([]signingKeyPublic, error)
}

func handleJWKS(log hclog.Logger, store keyLister) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys, err := store.PublicKeys(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		web.WriteJSON(w, http.StatusOK, jwks(keys))
	})
}

// localVerifier checks tokens inside auth itself: keys and sessions straight from the database.
func localVerifier(store interface {
	keyLister
	sessionLookup
}) *authn.Verifier {
	keys := func(ctx context.Context) (jose.JSONWebKeySet, error) {
		k, err := store.PublicKeys(ctx)
		if err != nil {
			return jose.JSONWebKeySet{}, err
		}
		return jwks(k), nil
	}
	active := func(ctx context.Context, id string) (string, bool, error) {
		userID, _, err := store.ActiveSession(ctx, id)
		if errors.Is(err, errNotFound) {
			return "", false, nil
		}
		return userID, err == nil, err
	}
	return authn.NewVerifier(keys, active, authn.Options{MinRefresh: time.Second})
}
