package main

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// routes is orders' whole HTTP API. Every call needs a bearer token; users see only their own orders, admins
// every order (the admin list) and may cancel any.
func routes(log hclog.Logger, store *postgresStore, s *saga, carts cartSource, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)
	requireAdmin := authn.RequireRole(verifier, log, authn.RoleAdmin)

	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/v1/orders", requireToken(handleCreateOrder(log, store, carts, s, time.Now))).Methods(http.MethodPost)
	r.Handle("/v1/orders", requireToken(handleListOrders(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/orders/{id}", requireToken(handleGetOrder(log, store, pathVar("id")))).Methods(http.MethodGet)
	r.Handle("/v1/orders/{id}/cancel", requireToken(handleCancelOrder(log, store, s, pathVar("id")))).Methods(http.MethodPost)
	r.Handle("/v1/admin/orders", requireAdmin(handleAdminOrders(log, store))).Methods(http.MethodGet)

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
