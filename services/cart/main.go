// Command cart is shoplab's shopping cart: one cart per user in its own database. Item names and prices are
// copied from catalog (found through Consul) when an item is set; tokens are verified locally against auth's
// published keys.
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
	"shoplab/internal/authn"
	"shoplab/internal/metrics"
	"shoplab/internal/svcclient"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "cart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := app.Load("cart", "127.0.0.1:8083", getenv)
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
	services := svcclient.New(ctx, consul, log, svcclient.Options{})
	services.Watch(catalogService)
	handler := routes(log, &postgresStore{db: db}, &catalogClient{c: services}, authn.NewRemote(services), reg, ready)
	return app.Serve(ctx, base, log, consul, app.Service{Handler: handler, Public: true, Ready: ready})
}
