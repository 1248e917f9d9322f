package main

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The storefront is plain HTML, CSS and JavaScript embedded in the binary: no CDN, no build step, works offline.
//
//go:embed static
var staticFS embed.FS

func staticRoot() fs.FS {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

func staticFiles() http.Handler {
	return http.StripPrefix("/static/", http.FileServer(http.FS(staticRoot())))
}

// staticPage serves one embedded page.
func staticPage(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, staticRoot(), name)
	})
}

// securityHeaders keeps the pages to their own scripts and styles and out of other sites' frames.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
			h.Set("X-Frame-Options", "DENY")
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}
