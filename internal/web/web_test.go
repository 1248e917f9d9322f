package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

type sample struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	Tags  []string
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name, body, contentType string
		status                  int
		wantInMsg               string
	}{
		{"valid", `{"name":"a","count":2}`, "application/json", 0, ""},
		{"valid with charset", `{"name":"a"}`, "application/json; charset=utf-8", 0, ""},
		{"trailing whitespace", "{\"name\":\"a\"}\n  ", "application/json", 0, ""},
		{"no content type", `{}`, "", 415, "application/json"},
		{"text/plain", `{}`, "text/plain", 415, "text/plain"},
		{"bad media type", `{}`, "application/json;;;=", 415, "application/json"},
		{"empty", ``, "application/json", 400, "empty"},
		{"unknown field", `{"name":"a","admin":true}`, "application/json", 400, `unknown field "admin"`},
		{"syntax", `{"name":"a",}`, "application/json", 400, "malformed JSON at byte"},
		{"truncated", `{"name":"a"`, "application/json", 400, "ends too early"},
		{"wrong type", `{"count":"two"}`, "application/json", 400, `field "count" must be an integer, not string`},
		{"not an object", `"hello"`, "application/json", 400, "must be a JSON object"},
		{"trailing object", `{"name":"a"}{"name":"b"}`, "application/json", 400, "trailing data"},
		{"trailing garbage", `{"name":"a"} x`, "application/json", 400, "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			var s sample
			err := DecodeJSON(r, &s)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("got %v; want no error", err)
				}
				return
			}
			var we *Error
			if !errors.As(err, &we) || we.Status != tc.status || !strings.Contains(we.Message, tc.wantInMsg) {
				t.Fatalf("got %v; want %d mentioning %q", err, tc.status, tc.wantInMsg)
			}
		})
	}
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeErr(t *testing.T, w *httptest.ResponseRecorder) errorDetail {
	t.Helper()
	var eb struct {
		Error errorDetail `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("body %q: %v", w.Body.String(), err)
	}
	return eb.Error
}

func TestHandlerMiddleware(t *testing.T) {
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/echo":
			var s sample
			if err := DecodeJSON(r, &s); err != nil {
				WriteError(w, r, hclog.NewNullLogger(), err)
				return
			}
			WriteJSON(w, 200, map[string]string{"request_id": RequestID(r.Context())})
		case "/fail":
			WriteError(w, r, hclog.NewNullLogger(), errors.New("database password is hunter2"))
		}
	}), Options{BodyLimit: 64})

	t.Run("request id generated", func(t *testing.T) {
		w := serve(h, httptest.NewRequest("GET", "/fail", nil))
		if id := w.Header().Get(RequestIDHeader); len(id) < 16 || decodeErr(t, w).RequestID != id {
			t.Fatalf("got header %q and body id %q; want a generated id in both", id, decodeErr(t, w).RequestID)
		}
	})
	t.Run("request id echoed", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/fail", nil)
		r.Header.Set(RequestIDHeader, "client-chosen.id:42")
		if w := serve(h, r); w.Header().Get(RequestIDHeader) != "client-chosen.id:42" {
			t.Fatalf("got %q; want the client's id", w.Header().Get(RequestIDHeader))
		}
	})
	t.Run("unsafe request id replaced", func(t *testing.T) {
		r := httptest.NewRequest("GET", "/fail", nil)
		r.Header.Set(RequestIDHeader, "<script>alert(1)</script>")
		if w := serve(h, r); strings.Contains(w.Header().Get(RequestIDHeader), "<") {
			t.Fatalf("got %q; want a fresh id", w.Header().Get(RequestIDHeader))
		}
	})
	t.Run("internal errors hide details", func(t *testing.T) {
		w := serve(h, httptest.NewRequest("GET", "/fail", nil))
		if w.Code != 500 || strings.Contains(w.Body.String(), "hunter2") || decodeErr(t, w).Code != "internal_error" {
			t.Fatalf("got %d %s; want 500 internal_error without details", w.Code, w.Body)
		}
	})
	t.Run("panic recovered", func(t *testing.T) {
		w := serve(h, httptest.NewRequest("GET", "/panic", nil))
		if w.Code != 500 || decodeErr(t, w).Code != "internal_error" || strings.Contains(w.Body.String(), "boom") {
			t.Fatalf("got %d %s; want 500 internal_error", w.Code, w.Body)
		}
	})
	t.Run("body limit", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/echo", strings.NewReader(`{"name":"`+strings.Repeat("x", 100)+`"}`))
		r.Header.Set("Content-Type", "application/json")
		w := serve(h, r)
		if w.Code != 413 || decodeErr(t, w).Code != "body_too_large" {
			t.Fatalf("got %d %s; want 413 body_too_large", w.Code, w.Body)
		}
	})
	t.Run("trailing data past the limit is still 413", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/echo", strings.NewReader(`{"name":"x"}`+strings.Repeat(" ", 100)+"x"))
		r.Header.Set("Content-Type", "application/json")
		w := serve(h, r)
		if w.Code != 413 {
			t.Fatalf("got %d %s; want 413", w.Code, w.Body)
		}
	})
}

func TestQuery(t *testing.T) {
	r := httptest.NewRequest("GET", "/?a=1", nil)
	r.URL.RawQuery = "a=%zz"
	var we *Error
	if _, err := Query(r); !errors.As(err, &we) || we.Status != 400 {
		t.Fatalf("got %v; want a 400", err)
	}
}

// FuzzDecodeJSON: the shared decoder never panics and answers every bad body with a 4xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"a","count":1,"Tags":["x"]}`, `{`, `[]`, `{"count":1e400}`, `{"name":"\ud800"}`, "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/", io.NopCloser(strings.NewReader(body)))
		r.Header.Set("Content-Type", "application/json")
		var s sample
		err := DecodeJSON(r, &s)
		var we *Error
		if err != nil && (!errors.As(err, &we) || we.Status/100 != 4) {
			t.Fatalf("body %q: got %v; want nil or a 4xx *Error", body, err)
		}
	})
}

// TestErrorBody: an error's body is the API.md error object, with its extra fields beside it, and the answer
// says it is JSON and not to be sniffed.
func TestErrorBody(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"plain", Errorf(409, "sku_taken", "sku %q is taken", "A-1"), `{"error":{"code":"sku_taken","message":"sku \"A-1\" is taken","request_id":"req-1"}}` + "\n"},
		{"with a payment beside it", &Error{Status: 422, Code: "card_declined", Message: "the card was declined", Extra: map[string]any{"payment": map[string]string{"id": "pay_1"}}},
			`{"error":{"code":"card_declined","message":"the card was declined","request_id":"req-1"},"payment":{"id":"pay_1"}}` + "\n"},
		{"an extra field cannot replace the error", &Error{Status: 400, Code: "x", Message: "y", Extra: map[string]any{"error": "spoofed"}},
			`{"error":{"code":"x","message":"y","request_id":"req-1"}}` + "\n"},
	}
	for _, tt := range tests {
		if got := string(tt.err.Body("req-1")); got != tt.want {
			t.Errorf("%s: got %s; want %s", tt.name, got, tt.want)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		WriteError(w, r, hclog.NewNullLogger(), tt.err)
		if w.Code != tt.err.Status || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: got %d %q %q; want %d, application/json, nosniff", tt.name, w.Code, w.Header().Get("Content-Type"), w.Header().Get("X-Content-Type-Options"), tt.err.Status)
		}
	}
}
