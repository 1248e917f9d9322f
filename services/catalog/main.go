// Command catalog is shoplab's product catalogue: products, categories, search and stock. It reserves,
// commits, releases and returns stock for orders, idempotently per order id, and never lets stock go
// negative; admins create, edit, archive and restock products (their tokens checked against auth's keys).
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/consulx"
	"shoplab/internal/svcclient"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "catalog:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	rt, err := app.Boot(ctx, "catalog", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	services := svcclient.New(rt.Ctx, rt.Consul, rt.Mesh, rt.Log, svcclient.Options{})
	verifier := authn.NewRemote(rt.Ctx, services, rt.Config.JWKSRefresh, rt.Log) // the operators' calls need an admin's token
	handler := routes(rt.Log, &postgresStore{db: rt.DB}, verifier, rt.Metrics, rt.Checks())
	// Edits set fields and archiving is final, so both repeat safely; a stock adjustment repeats only under
	// its Idempotency-Key; creating a product does not repeat (a second try would meet sku_taken). Of orders'
	// internal calls, a lookup only reads, and a reservation and its commit, release and return are each kept
	// once per order id: a second one answers what the first did.
	retry := consulx.RetryPolicy{Methods: []string{"GET", "HEAD"},
		Routes: []string{"PATCH /v1/products/*", "DELETE /v1/products/*", "POST /internal/v1/products/lookup", "POST /internal/v1/reservations",
			"POST /internal/v1/reservations/*/commit", "POST /internal/v1/reservations/*/release", "POST /internal/v1/reservations/*/return"},
		Keyed: []string{"POST /v1/products/*/stock-adjustments"}}
	return rt.Serve(app.Service{Handler: handler, Public: true, Mesh: true, Ready: rt.Ready, Retry: retry})
}
