package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/metrics"
)

// TestRouter: what every service answers besides its API — health, metrics, the error body for an unknown path
// or method — and a route's path variable, with route templates (not raw paths) as metric labels.
func TestRouter(t *testing.T) {
	reg := metrics.New()
	r := NewRouter(hclog.NewNullLogger(), reg, nil)
	r.Handle("/v1/things/{id}", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = w.Write([]byte("thing " + PathVar("id")(req)))
	})).Methods(http.MethodGet)
	h := r.Handler()
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/v1/things/42", 200, "thing 42"},
		{"GET", "/health/live", 200, ""},
		{"GET", "/health/ready", 200, ""},
		{"GET", "/nowhere", 404, `"code":"not_found"`},
		{"DELETE", "/v1/things/42", 405, `"code":"method_not_allowed"`},
		{"GET", "/metrics", 200, `route="GET /v1/things/{id}"`},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.status || !strings.Contains(w.Body.String(), tt.body) {
			t.Errorf("%s %s: got %d %q; want %d with %q", tt.method, tt.path, w.Code, w.Body.String(), tt.status, tt.body)
		}
	}
}
