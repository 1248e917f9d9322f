package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"shoplab/internal/web"
)

// FuzzDecodeCreateUser feeds arbitrary bodies to the POST /v1/users decoder: it must never panic, every
// refusal must be a 4xx, and everything it accepts must satisfy the rules.
func FuzzDecodeCreateUser(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@b.co","password":"0123456789","name":"A"}`,
		`{"email":"A@B.CO ","password":"ééééééééééé","name":" x "}`,
		`{"email":"","password":"","name":""}`, `{}`, `[]`, `null`, `{"email":1}`, `{"x":1}`, `{"email":"a@b.co"} x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/users", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeCreateUser(r)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status < 400 || we.Status > 499 {
				t.Fatalf("refusal of %q: got %v; want a 4xx *web.Error", body, err)
			}
			return
		}
		if req.Email != strings.ToLower(req.Email) || !strings.Contains(req.Email, "@") {
			t.Fatalf("accepted email %q; want lower case with @", req.Email)
		}
		if utf8.RuneCountInString(req.Password) < minPasswordChars || len(req.Password) > maxPasswordBytes {
			t.Fatalf("accepted password of %d bytes; want %d chars to %d bytes", len(req.Password), minPasswordChars, maxPasswordBytes)
		}
		if req.Name == "" || strings.TrimSpace(req.Name) != req.Name {
			t.Fatalf("accepted name %q; want trimmed and not empty", req.Name)
		}
	})
}

// FuzzDecodeCreateSession feeds arbitrary bodies to the POST /v1/sessions decoder.
func FuzzDecodeCreateSession(f *testing.F) {
	for _, s := range []string{`{"email":"a@b.co","password":"x"}`, `{"email":"a@b.co"}`, `{`, `{"password":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/sessions", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeCreateSession(r)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
				t.Fatalf("refusal of %q: got %v; want a 400 *web.Error", body, err)
			}
			return
		}
		if req.Email == "" || req.Password == "" {
			t.Fatalf("accepted %q with an empty email or password", body)
		}
	})
}
