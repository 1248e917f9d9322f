package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"shoplab/internal/topology"
	"shoplab/lab/testkit"
)

// browser is an HTTP client with a cookie jar, as a browser would hold the front's cookies.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar}}
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) do(method, path, body string, headers ...string) testkit.Resp {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return testkit.Resp{Status: resp.StatusCode, Header: resp.Header, Body: got}
}

func TestSessionCookiesAndCSRF(t *testing.T) {
	st := testkit.StartStack(t, append(topology.Default().Needs("cart"), "cart")...)
	front := startFront(t, st, nil)
	u := testkit.NewUser(t, st.URL("auth"))
	b := newBrowser(t, front.URL)

	testkit.WantError(t, b.do("GET", "/session", ""), 401, "not_logged_in")
	testkit.WantError(t, b.do("POST", "/session", `{"email":"`+u.Email+`","password":"wrong password"}`), 401, "invalid_credentials")
	testkit.WantError(t, b.do("POST", "/session", `{"email":"`+u.Email+`","password":"a long password"}`, "Origin", "http://evil.example"), 403, "csrf_token_invalid")

	r := b.do("POST", "/session", `{"email":"`+u.Email+`","password":"a long password"}`)
	if r.Status != 201 || strings.Contains(r.String(), "token") {
		t.Fatalf("login: got %d %s; want 201 without the token in the body", r.Status, r.Body)
	}
	var session, csrf string
	for _, c := range r.Header.Values("Set-Cookie") {
		switch {
		case strings.HasPrefix(c, sessionCookie+"="):
			session = c
		case strings.HasPrefix(c, csrfCookie+"="):
			csrf = c
		}
	}
	if !strings.Contains(session, "HttpOnly") || !strings.Contains(session, "SameSite=Strict") || !strings.Contains(csrf, "SameSite=Strict") || strings.Contains(csrf, "HttpOnly") {
		t.Fatalf("cookies: got session %q, csrf %q; want an HttpOnly SameSite=Strict session and a readable SameSite=Strict csrf cookie", session, csrf)
	}
	if r := b.do("GET", "/session", ""); r.Status != 200 || !strings.Contains(r.String(), u.Email) {
		t.Fatalf("session: got %d %s", r.Status, r.Body)
	}

	// The cookie authenticates /api calls; changing state needs the CSRF header too.
	if r := b.do("GET", "/api/cart/v1/cart", ""); r.Status != 200 {
		t.Fatalf("cart with the cookie: got %d %s", r.Status, r.Body)
	}
	put := `{"quantity":1}`
	item := "/api/cart/v1/cart/items/prd_01hx4kq2m3kettle000004"
	testkit.WantError(t, b.do("PUT", item, put), 403, "csrf_token_invalid")
	testkit.WantError(t, b.do("PUT", item, put, csrfHeader, "forged"), 403, "csrf_token_invalid")
	if r := b.do("PUT", item, put, csrfHeader, b.cookie(csrfCookie).Value); r.Status != 200 {
		t.Fatalf("PUT with the CSRF header: got %d %s", r.Status, r.Body)
	}
	// An API client with its own bearer token needs no cookie and no CSRF header.
	if r := testkit.Call(t, "PUT", front.URL+item, put, u.Bearer()...); r.Status != 200 {
		t.Fatalf("PUT with a bearer token: got %d %s", r.Status, r.Body)
	}

	browserToken := b.cookie(sessionCookie).Value
	testkit.WantError(t, b.do("DELETE", "/session", ""), 403, "csrf_token_invalid")
	if r := b.do("DELETE", "/session", "", csrfHeader, b.cookie(csrfCookie).Value); r.Status != 204 {
		t.Fatalf("logout: got %d %s", r.Status, r.Body)
	}
	if b.cookie(sessionCookie) != nil {
		t.Fatal("session cookie still set after logout")
	}
	// The logged-out token is refused everywhere, not only at the front.
	testkit.WantError(t, testkit.Call(t, "GET", st.URL("cart")+"/v1/cart", "", "Authorization", "Bearer "+browserToken), 401, "token_revoked")
	if r := testkit.Call(t, "GET", st.URL("cart")+"/v1/cart", "", u.Bearer()...); r.Status != 200 {
		t.Fatalf("the user's other session: got %d; want it unaffected", r.Status)
	}
}

func TestStorefrontPages(t *testing.T) {
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	for _, p := range []struct{ path, want string }{
		{"/", `<main id="view">`}, {"/static/app.js", "function route()"}, {"/static/style.css", "--accent"},
		{"/status", "Service status"}, {"/status.json", `"services"`},
	} {
		r := testkit.Call(t, "GET", front.URL+p.path, "")
		if r.Status != 200 || !strings.Contains(r.String(), p.want) {
			t.Fatalf("%s: got %d; want 200 containing %q", p.path, r.Status, p.want)
		}
		if p.path == "/" && !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("/: got CSP %q; want default-src 'self'", r.Header.Get("Content-Security-Policy"))
		}
	}
	waitStatus(t, front, "catalog with one passing instance and its checks", func(s statusReport) bool {
		for _, svc := range s.Services {
			if svc.Name == "catalog" && len(svc.Instances) == 1 && svc.Instances[0].Status == "passing" && len(svc.Instances[0].Checks) > 0 {
				return true
			}
		}
		return false
	})
}
