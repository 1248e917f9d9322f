package main

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// routes is auth's whole HTTP API.
func routes(log hclog.Logger, store *postgresStore, verifier *authn.Verifier, iss *issuer, pw *passwords, lim *limiter, revoked *feed, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)

	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/v1/users", handleCreateUser(log, store, pw, lim)).Methods(http.MethodPost)
	r.Handle("/v1/users/me", requireToken(handleGetMe(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/sessions", handleCreateSession(log, store, pw, iss, lim)).Methods(http.MethodPost)
	r.Handle("/v1/sessions/current", requireToken(handleDeleteSession(log, store, func(ctx context.Context) bool { return revoked.settle(ctx, settleLimit) }))).Methods(http.MethodDelete)
	r.Handle("/v1/jwks", handleJWKS(log, store)).Methods(http.MethodGet)

	// Internal: never routed by the front.
	r.Handle("/internal/v1/sessions/{id}", handleSessionStatus(log, store, pathVar("id"))).Methods(http.MethodGet)
	r.Handle("/internal/v1/revocations", handleRevocations(log, store, revoked)).Methods(http.MethodGet)

	r.Handle("/health/live", health.Live()).Methods(http.MethodGet)
	r.Handle("/health/ready", health.Ready(2*time.Second, checks...)).Methods(http.MethodGet)
	r.Handle("/metrics", reg.Handler()).Methods(http.MethodGet)

	return web.Handler(r, web.Options{Log: log, Observe: reg.ObserveHTTP})
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
