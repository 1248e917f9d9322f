// Command payments is shoplab's internal payment service: it authorises or declines test cards, one payment
// per order, idempotently per Idempotency-Key, and refunds. It keeps only a card's brand and last four digits.
// It registers as internal: the front never routes to it.
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"shoplab/internal/app"
	"shoplab/internal/metrics"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "payments:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := app.Load("payments", "127.0.0.1:8085", getenv)
	if err != nil {
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
	handler := routes(log, &postgresStore{db: db}, reg, ready)
	return app.Serve(ctx, base, log, consul, app.Service{Handler: handler, Public: false, Ready: ready})
}
