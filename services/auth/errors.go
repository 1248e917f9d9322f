package main

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

var (
	errNotFound       = errors.New("not found")
	errEmailTaken     = errors.New("email taken")
	errBadCredentials = errors.New("bad credentials")
)

// writeError maps auth's errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	var limited *rateLimitedError
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(limited.seconds()))
		err = web.Errorf(http.StatusTooManyRequests, "rate_limited", "too many attempts from this address or for this account; try again in %d seconds", limited.seconds())
	case errors.Is(err, errOverloaded):
		w.Header().Set("Retry-After", "1")
		err = web.Errorf(http.StatusServiceUnavailable, "overloaded", "too many sign-ins at once; try again in a moment")
	case errors.Is(err, errEmailTaken):
		err = web.Errorf(http.StatusConflict, "email_taken", "an account with this email already exists")
	case errors.Is(err, errBadCredentials):
		err = web.Errorf(http.StatusUnauthorized, "invalid_credentials", "email or password is wrong")
	case errors.Is(err, errNotFound):
		err = web.NotFound("resource")
	case errors.Is(err, authn.ErrMissing), errors.Is(err, authn.ErrMalformed), errors.Is(err, authn.ErrBadSig),
		errors.Is(err, authn.ErrExpired), errors.Is(err, authn.ErrRevoked), errors.Is(err, authn.ErrUnavailable),
		errors.Is(err, authn.ErrForbidden):
		err = authn.AsHTTPError(err)
	case pgdb.Unavailable(err):
		err = web.DatabaseUnavailable(err)
	}
	web.WriteError(w, r, log, err)
}
