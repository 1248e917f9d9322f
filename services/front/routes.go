package main

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// routes is the front's whole HTTP surface: the gateway, the browser session, the status page and the
// storefront.
func routes(log hclog.Logger, g *gateway, s *sessions, reg *metrics.Registry, checks []health.Check) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	// The gateway forwards the methods the services' APIs use; any other method is 405 here, never forwarded.
	r.Handle("/api/{service}/{path:.*}", handleAPI(log, g, s, pathVar("service"), pathVar("path"))).
		Methods(http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete)

	r.Handle("/session", handleSession(log, s)).Methods(http.MethodGet)
	r.Handle("/session", handleLogin(log, s)).Methods(http.MethodPost)
	r.Handle("/session", handleLogout(log, s)).Methods(http.MethodDelete)

	r.Handle("/status", staticPage("status.html")).Methods(http.MethodGet)
	r.Handle("/status.json", handleStatusJSON(log, g)).Methods(http.MethodGet)
	r.PathPrefix("/static/").Handler(staticFiles()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/", staticPage("index.html")).Methods(http.MethodGet)

	r.Handle("/health/live", health.Live()).Methods(http.MethodGet)
	r.Handle("/health/ready", health.Ready(2*time.Second, checks...)).Methods(http.MethodGet)
	r.Handle("/metrics", reg.Handler()).Methods(http.MethodGet)

	return web.Handler(securityHeaders(r), web.Options{Log: log, Observe: reg.ObserveHTTP})
}

func routeTemplate(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		t, _ := rt.GetPathTemplate()
		return t
	}
	return ""
}

func pathVar(name string) func(*http.Request) string {
	return func(r *http.Request) string { return mux.Vars(r)[name] }
}
