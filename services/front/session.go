package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/svcclient"
	"shoplab/internal/web"
)

// The browser session: the token lives in an HttpOnly, SameSite=Strict cookie that scripts cannot read; a
// second, readable cookie holds a random CSRF token that state-changing requests echo in a header (double
// submit), so another site can neither read the session nor make the browser act with it.
const (
	sessionCookie = "shoplab_session"
	csrfCookie    = "shoplab_csrf"
	csrfHeader    = "X-CSRF-Token"
)

// authService is the Consul name of the auth service.
const authService = "auth"

var errCSRF = web.Errorf(http.StatusForbidden, "csrf_token_invalid", "this request needs the "+csrfHeader+" header that matches the "+csrfCookie+" cookie; reload the page")

type sessions struct {
	log    hclog.Logger
	svc    *svcclient.Client
	secure bool // mark cookies Secure (serve the front over HTTPS)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// authorize prepares an /api request (its headers h and method). A request that brings its own Authorization
// header is left alone (API clients). One authenticated by the session cookie gets the cookie's token as a
// bearer token, and if it changes state it must carry the CSRF token.
func (s *sessions) authorize(h *fasthttp.RequestHeader, method string) error {
	if len(h.Peek("Authorization")) > 0 {
		return nil
	}
	token := h.Cookie(sessionCookie)
	if len(token) == 0 {
		return nil
	}
	if !safeMethod(method) {
		c, given := h.Cookie(csrfCookie), h.Peek(csrfHeader)
		if len(c) == 0 || len(given) == 0 || subtle.ConstantTimeCompare(c, given) != 1 {
			return errCSRF
		}
	}
	h.Set("Authorization", "Bearer "+string(token))
	return nil
}

func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	h := r.Header.Get(csrfHeader)
	return err == nil && c.Value != "" && h != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(h)) == 1
}

// sameOrigin refuses a request whose Origin names another site (a cross-site form or script).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *sessions) setCookies(w http.ResponseWriter, token string, expires time.Time) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	maxAge := int(time.Until(expires).Seconds())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: maxAge, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/", MaxAge: maxAge, Secure: s.secure, SameSite: http.SameSiteStrictMode})
	return nil
}

func (s *sessions) clearCookies(w http.ResponseWriter) {
	for _, name := range []string{sessionCookie, csrfCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: name == sessionCookie, Secure: s.secure, SameSite: http.SameSiteStrictMode})
	}
}

// passRemote answers with another service's error as it gave it, or maps unavailability to 503.
func passRemote(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	if re := svcclient.Remote(err); re != nil && re.Status < 500 {
		if ra := re.Header.Get("Retry-After"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		web.WriteErrorStatus(w, r, re.Status, re.Code, re.Message)
		return
	}
	if svcclient.IsUnavailable(err) || svcclient.Remote(err) != nil {
		log.Warn("auth unavailable", "error", err)
		web.WriteErrorStatus(w, r, http.StatusServiceUnavailable, "service_unavailable", "sign-in is unavailable right now; try again shortly")
		return
	}
	web.WriteError(w, r, log, err)
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

type sessionUser struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"` // the page shows the Admin area to admins (every admin call is checked by the services)
}

// handleLogin logs in through auth and keeps the token in the session cookie; the token itself never reaches
// the page's scripts.
func handleLogin(log hclog.Logger, s *sessions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) {
			web.WriteError(w, r, log, errCSRF)
			return
		}
		var req loginRequest
		if err := web.DecodeJSON(r, &req); err != nil {
			web.WriteError(w, r, log, err)
			return
		}
		var out struct {
			Token     string      `json:"token"`
			ExpiresAt time.Time   `json:"expires_at"`
			User      sessionUser `json:"user"`
		}
		h := http.Header{}
		setClientAddr(h, r)
		if _, err := s.svc.CallJSON(r.Context(), authService, http.MethodPost, "/v1/sessions", h, req, &out); err != nil {
			passRemote(w, r, log, err)
			return
		}
		if err := s.setCookies(w, out.Token, out.ExpiresAt); err != nil {
			web.WriteError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, map[string]any{"user": out.User, "expires_at": out.ExpiresAt.UTC().Format(time.RFC3339)})
	})
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// handleLogout revokes the session in auth (so the token is refused everywhere) and clears the cookies.
func handleLogout(log hclog.Logger, s *sessions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err == nil && c.Value != "" {
			if !csrfOK(r) {
				web.WriteError(w, r, log, errCSRF)
				return
			}
			_, err := s.svc.CallJSON(r.Context(), authService, http.MethodDelete, "/v1/sessions/current", bearer(c.Value), nil, nil)
			if err != nil && svcclient.Remote(err) == nil {
				passRemote(w, r, log, err) // auth unreachable: keep the cookie, the token is still live
				return
			}
		}
		s.clearCookies(w)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleSession tells the page who is logged in.
func handleSession(log hclog.Logger, s *sessions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil || c.Value == "" {
			web.WriteErrorStatus(w, r, http.StatusUnauthorized, "not_logged_in", "not logged in")
			return
		}
		var u sessionUser
		_, err = s.svc.CallJSON(r.Context(), authService, http.MethodGet, "/v1/users/me", bearer(c.Value), nil, &u)
		if re := svcclient.Remote(err); re != nil && re.Status == http.StatusUnauthorized {
			s.clearCookies(w)
		}
		if err != nil {
			passRemote(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"user": u})
	})
}
