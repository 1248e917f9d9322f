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

// routes is cart's whole HTTP API. Every public call needs a bearer token; a cart belongs to its user.
func routes(log hclog.Logger, store *postgresStore, catalog productSource, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)

	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/v1/cart", requireToken(handleGetCart(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/cart", requireToken(handleClearCart(log, store))).Methods(http.MethodDelete)
	r.Handle("/v1/cart/items/{product_id}", requireToken(handleSetItem(log, store, catalog, pathVar("product_id")))).Methods(http.MethodPut)
	r.Handle("/v1/cart/items/{product_id}", requireToken(handleDeleteItem(log, store, pathVar("product_id")))).Methods(http.MethodDelete)

	// Internal: called by orders, never routed by the front.
	r.Handle("/internal/v1/carts/{user_id}", handleInternalGetCart(log, store, pathVar("user_id"))).Methods(http.MethodGet)
	r.Handle("/internal/v1/carts/{user_id}/remove", handleInternalRemove(log, store, pathVar("user_id"))).Methods(http.MethodPost)

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
