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

// routes is payments' whole HTTP API. The service registers as internal: only orders calls it.
func routes(log hclog.Logger, store *postgresStore, reg *metrics.Registry, checks []health.Check) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/v1/payments", handleCharge(log, store, time.Now)).Methods(http.MethodPost)
	r.Handle("/v1/payments", handleFindPayment(log, store)).Methods(http.MethodGet)
	r.Handle("/v1/payments/void", handleVoid(log, store, time.Now)).Methods(http.MethodPost)
	r.Handle("/v1/payments/{id}", handleGetPayment(log, store, pathVar("id"))).Methods(http.MethodGet)
	r.Handle("/v1/payments/{id}/refund", handleRefund(log, store, pathVar("id"))).Methods(http.MethodPost)

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
