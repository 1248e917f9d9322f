package main

import (
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/app"
	"shoplab/internal/health"
	"shoplab/internal/idem"
	"shoplab/internal/metrics"
)

// routes is payments' whole HTTP API. The service registers as internal: only orders calls it.
func routes(log hclog.Logger, store *postgresStore, prints idem.Fingerprinter, reg *metrics.Registry, checks []health.Check) http.Handler {
	r := app.NewRouter(log, reg, checks)

	r.Handle("/v1/payments", handleCharge(log, store, prints, time.Now)).Methods(http.MethodPost)
	r.Handle("/v1/payments", handleFindPayment(log, store)).Methods(http.MethodGet)
	r.Handle("/v1/payments/void", handleVoid(log, store, time.Now)).Methods(http.MethodPost)
	r.Handle("/v1/payments/{id}", handleGetPayment(log, store, app.PathVar("id"))).Methods(http.MethodGet)
	r.Handle("/v1/payments/{id}/refund", handleRefund(log, store, app.PathVar("id"))).Methods(http.MethodPost)

	return r.Handler()
}
