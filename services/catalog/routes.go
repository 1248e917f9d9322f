package main

import (
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/health"
	"shoplab/internal/mesh"
	"shoplab/internal/metrics"
	"shoplab/internal/topology"
)

// routes is catalog's whole HTTP API.
func routes(log hclog.Logger, store *postgresStore, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireAdmin := authn.RequireRole(verifier, log, authn.RoleAdmin)

	r := app.NewRouter(log, reg, checks)

	r.Handle("/v1/products", handleListProducts(log, store)).Methods(http.MethodGet)
	r.Handle("/v1/products/{id}", handleGetProduct(log, store, app.PathVar("id"))).Methods(http.MethodGet)
	r.Handle("/v1/categories", handleListCategories(log, store)).Methods(http.MethodGet)

	// The operators' calls: an admin's token only.
	r.Handle("/v1/products", requireAdmin(handleCreateProduct(log, store))).Methods(http.MethodPost)
	r.Handle("/v1/products/{id}", requireAdmin(handleUpdateProduct(log, store, app.PathVar("id")))).Methods(http.MethodPatch)
	r.Handle("/v1/products/{id}", requireAdmin(handleArchiveProduct(log, store, app.PathVar("id")))).Methods(http.MethodDelete)
	r.Handle("/v1/products/{id}/stock-adjustments", requireAdmin(handleAdjustStock(log, store, app.PathVar("id")))).Methods(http.MethodPost)

	// Internal: called by orders alone (the topology's internal callers), never routed by the front.
	orders := mesh.RequireCaller(topology.Default().InternalCallers("catalog")...)
	r.Handle("/internal/v1/products/lookup", orders(handleLookupProducts(log, store))).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations", orders(handleReserve(log, store))).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}", orders(handleGetReservation(log, store, app.PathVar("order_id")))).Methods(http.MethodGet)
	r.Handle("/internal/v1/reservations/{order_id}/commit", orders(handleSettle(log, store, app.PathVar("order_id"), "committed"))).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}/release", orders(handleSettle(log, store, app.PathVar("order_id"), "released"))).Methods(http.MethodPost)
	r.Handle("/internal/v1/reservations/{order_id}/return", orders(handleSettle(log, store, app.PathVar("order_id"), "returned"))).Methods(http.MethodPost)

	return r.Handler()
}
