package main

import (
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/health"
	"shoplab/internal/idem"
	"shoplab/internal/metrics"
)

// routes is orders' whole HTTP API. Every call needs a bearer token; users see only their own orders, admins
// every order (the admin list) and may cancel any.
func routes(log hclog.Logger, store *postgresStore, s *saga, carts cartSource, prints idem.Fingerprinter, verifier *authn.Verifier, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)
	requireAdmin := authn.RequireRole(verifier, log, authn.RoleAdmin)

	r := app.NewRouter(log, reg, checks)

	r.Handle("/v1/orders", requireToken(handleCreateOrder(log, store, carts, s, prints, time.Now))).Methods(http.MethodPost)
	r.Handle("/v1/orders", requireToken(handleListOrders(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/orders/{id}", requireToken(handleGetOrder(log, store, app.PathVar("id")))).Methods(http.MethodGet)
	r.Handle("/v1/orders/{id}/cancel", requireToken(handleCancelOrder(log, store, s, app.PathVar("id")))).Methods(http.MethodPost)
	r.Handle("/v1/admin/orders", requireAdmin(handleAdminOrders(log, store))).Methods(http.MethodGet)

	return r.Handler()
}
