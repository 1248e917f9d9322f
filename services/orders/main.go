// Command orders is shoplab's checkout: POST /v1/orders places the caller's cart as an order through a
// persisted saga — reserve stock in catalog, charge in payments, confirm (commit the stock, empty the cart) —
// idempotent per Idempotency-Key, and a recovery worker drives any order left pending to a final state.
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"time"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/consulx"
	"shoplab/internal/idem"
	"shoplab/internal/svcclient"
	"shoplab/internal/topology"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

// config is orders' own configuration on top of app.Config.
type config struct {
	recoveryEvery time.Duration // ORDERS_RECOVERY_INTERVAL, default 30s
	recoveryAge   time.Duration // ORDERS_RECOVERY_AGE: a pending order untouched this long is recovered, default 1m
	recoveryLease time.Duration // ORDERS_RECOVERY_LEASE: a replica's claim on a stuck order, doubling per failure, default 1m
	callTimeout   time.Duration // ORDERS_CALL_TIMEOUT: per call to another service, default 5s
	// prints fingerprints checkout requests under ORDERS_FINGERPRINT_KEY or ORDERS_FINGERPRINT_KEY_FILE
	// (required: the same on every instance).
	prints idem.Fingerprinter
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	env := app.NewEnv(getenv)
	cfg := config{
		recoveryEvery: env.Duration("ORDERS_RECOVERY_INTERVAL", 30*time.Second),
		recoveryAge:   env.Duration("ORDERS_RECOVERY_AGE", time.Minute),
		recoveryLease: env.Duration("ORDERS_RECOVERY_LEASE", time.Minute),
		callTimeout:   env.Duration("ORDERS_CALL_TIMEOUT", 5*time.Second),
	}
	if err := env.Err(); err != nil {
		return err
	}
	if cfg.recoveryEvery <= 0 || cfg.recoveryLease < 100*time.Millisecond {
		return fmt.Errorf("ORDERS_RECOVERY_INTERVAL must be more than 0 and ORDERS_RECOVERY_LEASE at least 100ms")
	}
	key, err := app.LoadKey(getenv, "ORDERS_FINGERPRINT_KEY", idem.KeySize)
	if err != nil {
		return fmt.Errorf("orders needs a key for the fingerprints of checkouts under an Idempotency-Key: %w", err)
	}
	cfg.prints = idem.NewFingerprinter(key)
	rt, err := app.Boot(ctx, "orders", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	services := svcclient.New(rt.Ctx, rt.Consul, rt.Mesh, rt.Log, svcclient.Options{Timeout: cfg.callTimeout})
	for _, s := range topology.Default().Calls()["orders"] { // watched from the start: the first checkout waits for none
		services.Watch(s)
	}
	store := &postgresStore{db: rt.DB}
	deps := &remote{c: services}
	s := &saga{store: store, deps: deps, log: rt.Log.Named("saga"), afterStep: func(o order, from string, withCard bool) {
		if crash := crashAfterStep; crash != nil {
			crash(o, from, withCard)
		}
	}}

	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(rt.Ctx))
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		runRecovery(workerCtx, rt.Log.Named("recovery"), store, s, recovery{every: cfg.recoveryEvery, age: cfg.recoveryAge, lease: cfg.recoveryLease})
	}()
	defer func() { stopWorker(); <-workerDone }()

	handler := routes(rt.Log, store, s, deps, cfg.prints, authn.NewRemote(rt.Ctx, services, rt.Config.JWKSRefresh, rt.Log), rt.Metrics, rt.Checks())
	// Checkout repeats only under its Idempotency-Key; cancelling happens once however often it is asked.
	retry := consulx.RetryPolicy{Methods: []string{"GET", "HEAD"}, Keyed: []string{"POST /v1/orders"}, Routes: []string{"POST /v1/orders/*/cancel"}}
	return rt.Serve(app.Service{Handler: handler, Public: true, Mesh: true, Ready: rt.Ready, Retry: retry})
}
