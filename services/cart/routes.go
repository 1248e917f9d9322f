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

// routes is cart's whole HTTP API. Every public call needs a bearer token; a cart belongs to its user.
func routes(log hclog.Logger, store *postgresStore, catalog productSource, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)

	r := app.NewRouter(log, reg, checks)

	r.Handle("/v1/cart", requireToken(handleGetCart(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/cart", requireToken(handleClearCart(log, store))).Methods(http.MethodDelete)
	r.Handle("/v1/cart/items/{product_id}", requireToken(handleSetItem(log, store, catalog, app.PathVar("product_id")))).Methods(http.MethodPut)
	r.Handle("/v1/cart/items/{product_id}", requireToken(handleDeleteItem(log, store, app.PathVar("product_id")))).Methods(http.MethodDelete)

	// Internal: called by orders alone (the topology's internal callers), never routed by the front.
	orders := mesh.RequireCaller(topology.Default().InternalCallers("cart")...)
	r.Handle("/internal/v1/carts/{user_id}", orders(handleInternalGetCart(log, store, app.PathVar("user_id")))).Methods(http.MethodGet)
	r.Handle("/internal/v1/carts/{user_id}/remove", orders(handleInternalRemove(log, store, app.PathVar("user_id")))).Methods(http.MethodPost)

	return r.Handler()
}
