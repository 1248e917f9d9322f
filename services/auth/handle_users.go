package main

import (
	"context"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/ids"
	"shoplab/internal/valid"
	"shoplab/internal/web"
)

// user is an account as the API shows it.
type user struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Password rules: at least 10 characters (API.md); bcrypt reads at most 72 bytes, so longer is refused rather
// than silently truncated.
const (
	minPasswordChars = 10
	maxPasswordBytes = 72
)

type createUserRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// normalizeEmail lower-cases and checks an email address.
func normalizeEmail(s string) (string, error) {
	email := strings.ToLower(strings.TrimSpace(s))
	if email == "" {
		return "", web.BadRequest("email is required")
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 || !strings.Contains(email[strings.LastIndex(email, "@")+1:], ".") {
		return "", web.BadRequest("email %q is not a valid email address", s)
	}
	return email, nil
}

func (req *createUserRequest) validate() error {
	email, err := normalizeEmail(req.Email)
	if err != nil {
		return err
	}
	req.Email = email
	if req.Name, err = valid.Text("name", req.Name, 1, 100); err != nil {
		return err
	}
	switch {
	case !utf8.ValidString(req.Password):
		return web.BadRequest("password must be valid UTF-8")
	case utf8.RuneCountInString(req.Password) < minPasswordChars:
		return web.BadRequest("password must be at least %d characters", minPasswordChars)
	case len(req.Password) > maxPasswordBytes:
		return web.BadRequest("password must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

// decodeCreateUser reads and checks a POST /v1/users body.
func decodeCreateUser(r *http.Request) (createUserRequest, error) {
	var req createUserRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	return req, req.validate()
}

type userCreator interface {
	CreateUser(ctx context.Context, u user, hash []byte) error
}

// handleCreateUser registers an account. Every well-formed attempt counts against the client's address before
// any hashing, one for an email that is taken also against that account's ceiling; a limited attempt gets 429.
func handleCreateUser(log hclog.Logger, store userCreator, pw *passwords, lim *limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeCreateUser(r)
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
		if err := lim.takeRegistration(ctx, addr, req.Email); err != nil {
			log.Info("registration refused: rate limited", "client", addr, "request_id", web.RequestID(ctx))
			writeError(w, r, log, err)
			return
		}
		hash, err := pw.hash(ctx, req.Password)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		u := user{ID: ids.New("usr"), Email: req.Email, Name: req.Name, Roles: []string{}}
		if err := store.CreateUser(ctx, u, hash); err != nil {
			if errors.Is(err, errEmailTaken) {
				// Probing which emails have accounts counts against that account.
				if herr := lim.hitAccount(ctx, req.Email); herr != nil {
					err = herr
				}
			}
			writeError(w, r, log, err)
			return
		}
		log.Info("user registered", "user_id", u.ID)
		web.WriteJSON(w, http.StatusCreated, u)
	})
}

type userGetter interface {
	UserByID(ctx context.Context, id string) (user, error)
}

func handleGetMe(log hclog.Logger, store userGetter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := authn.FromContext(r.Context())
		u, err := store.UserByID(r.Context(), c.UserID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if u.Roles == nil {
			u.Roles = []string{}
		}
		web.WriteJSON(w, http.StatusOK, u)
	})
}
