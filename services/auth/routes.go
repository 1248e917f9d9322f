package main

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/health"
	"shoplab/internal/mesh"
	"shoplab/internal/metrics"
	"shoplab/internal/topology"
)

// routes is auth's whole HTTP API.
func routes(log hclog.Logger, store *postgresStore, verifier *authn.Verifier, iss *issuer, pw *passwords, lim *limiter, revoked *feed, reg *metrics.Registry, checks []health.Check) http.Handler {
	requireToken := authn.Require(verifier, log)

	r := app.NewRouter(log, reg, checks)

	r.Handle("/v1/users", handleCreateUser(log, store, pw, lim)).Methods(http.MethodPost)
	r.Handle("/v1/users/me", requireToken(handleGetMe(log, store))).Methods(http.MethodGet)
	r.Handle("/v1/sessions", handleCreateSession(log, store, pw, iss, lim)).Methods(http.MethodPost)
	r.Handle("/v1/sessions/current", requireToken(handleDeleteSession(log, store, func(ctx context.Context) bool { return revoked.settle(ctx, settleLimit) }))).Methods(http.MethodDelete)
	r.Handle("/v1/jwks", handleJWKS(log, store)).Methods(http.MethodGet)

	// Internal: the services that verify tokens (the topology's internal callers) ask about sessions and follow the revocations;
	// never routed by the front.
	verifiers := mesh.RequireCaller(topology.Default().InternalCallers("auth")...)
	r.Handle("/internal/v1/sessions/{id}", verifiers(handleSessionStatus(log, store, app.PathVar("id")))).Methods(http.MethodGet)
	r.Handle("/internal/v1/revocations", verifiers(handleRevocations(log, store, revoked))).Methods(http.MethodGet)

	return r.Handler()
}
