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
	"os/signal"
	"syscall"
	"time"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/metrics"
	"shoplab/internal/svcclient"
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
	callTimeout   time.Duration // ORDERS_CALL_TIMEOUT: per call to another service, default 5s
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := app.Load("orders", "127.0.0.1:8084", getenv)
	if err != nil {
		return err
	}
	env := app.NewEnv(getenv)
	cfg := config{
		recoveryEvery: env.Duration("ORDERS_RECOVERY_INTERVAL", 30*time.Second),
		recoveryAge:   env.Duration("ORDERS_RECOVERY_AGE", time.Minute),
		callTimeout:   env.Duration("ORDERS_CALL_TIMEOUT", 5*time.Second),
	}
	if err := env.Err(); err != nil {
		return err
	}
	log := base.Logger(stderr)
	reg := metrics.New()
	db, ready, err := base.OpenDatabase(ctx, log, migrationFiles, reg)
	if err != nil {
		return err
	}
	defer db.Close()
	consul, err := base.ConsulClient()
	if err != nil {
		return err
	}
	services := svcclient.New(ctx, consul, log, svcclient.Options{Timeout: cfg.callTimeout})
	for _, s := range []string{catalogService, cartService, paymentsService} {
		services.Watch(s)
	}
	store := &postgresStore{db: db}
	deps := &remote{c: services}
	s := &saga{store: store, deps: deps, log: log.Named("saga")}

	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		runRecovery(workerCtx, log.Named("recovery"), store, s, cfg.recoveryEvery, cfg.recoveryAge)
	}()
	defer func() { stopWorker(); <-workerDone }()

	handler := routes(log, store, s, deps, authn.NewRemote(services), reg, ready)
	return app.Serve(ctx, base, log, consul, app.Service{Handler: handler, Public: true, Ready: ready})
}
