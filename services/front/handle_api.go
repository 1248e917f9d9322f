package main

import (
	"io"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/web"
)

// blockedPrefix reports paths the front never routes: services' internal endpoints, their metrics and their
// health endpoints (whose failures name internal details; operators read them in Consul).
func blockedPrefix(path string) bool {
	for _, p := range []string{"/internal", "/metrics", "/health"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// handleAPI proxies /api/{service}/{path} to a passing instance of a public service.
func handleAPI(log hclog.Logger, g *gateway, s *sessions, service, rest func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, path := service(r), "/"+rest(r)
		if blockedPrefix(path) {
			web.WriteErrorStatus(w, r, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
			return
		}
		t, err := g.target(name)
		if err != nil {
			writeError(w, r, log, err, name)
			return
		}
		if err := s.authorize(r); err != nil {
			web.WriteError(w, r, log, err)
			return
		}
		var body []byte
		if r.Body != nil && r.Body != http.NoBody {
			// Bodies are small JSON (1 MiB limit); reading them whole lets a safe retry resend them.
			if body, err = io.ReadAll(r.Body); err != nil {
				web.WriteError(w, r, log, err)
				return
			}
		}
		if err := g.forward(w, r, t, path, body); err != nil {
			writeError(w, r, log, err, name)
		}
	})
}
