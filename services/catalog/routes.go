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

// routes is catalog's whole HTTP API.
func routes(log hclog.Logger, store *postgresStore, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireAdmin := authn.RequireRole(verifier, log, authn.RoleAdmin)

	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/v1/products", handleListProducts(log, store)).Methods(http.MethodGet)
	r.Handle("/v1/products/{id}", handleGetProduct(log, store, pathVar("id"))).Methods(http.MethodGet)
	r.Handle("/v1/categories", handleListCategories(log, store)).Methods(http.MethodGet)

	// The operators' calls: an admin's token only.
	r.Handle("/v1/products", requireAdmin(handleCreateProduct(log, store))).Methods(http.MethodPost)
	r.Handle("/v1/products/{id}", requireAdmin(handleUpdateProduct(log, store, pathVar("id")))).Methods(http.MethodPatch)
	r.Handle("/v1/products/{id}", requireAdmin(handleArchiveProduct(log, store, pathVar("id")))).Methods(http.MethodDelete)
	r.Handle("/v1/products/{id}/stock-adjustments", requireAdmin(handleAdjustStock(log, store, pathVar("id")))).Methods(http.MethodPost)

	// Internal: called by orders, never routed by the front.
	r.Handle("/internal/v1/products/lookup", handleLookupProducts(log, store)).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations", handleReserve(log, store)).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}", handleGetReservation(log, store, pathVar("order_id"))).Methods(http.MethodGet)
	r.Handle("/internal/v1/reservations/{order_id}/commit", handleSettle(log, store, pathVar("order_id"), "committed")).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}/release", handleSettle(log, store, pathVar("order_id"), "released")).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}/return", handleSettle(log, store, pathVar("order_id"), "returned")).Methods(http.MethodPost)

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
