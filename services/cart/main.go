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

	"shoplab/internal/app"
	"shoplab/internal/authn"
	"shoplab/internal/consulx"
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
	rt, err := app.Boot(ctx, "cart", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	services := svcclient.New(rt.Ctx, rt.Consul, rt.Mesh, rt.Log, svcclient.Options{})
	services.Watch(catalogService)
	handler := routes(rt.Log, &postgresStore{db: rt.DB}, &catalogClient{c: services}, authn.NewRemote(rt.Ctx, services, rt.Config.JWKSRefresh, rt.Log), rt.Metrics, rt.Checks())
	// Every cart call sets, reads or deletes: all are idempotent. So is orders' removal of an order's lines
	// (each only in the version the order read: a second removal finds nothing to remove).
	retry := consulx.RetryPolicy{Methods: []string{"GET", "HEAD", "PUT", "DELETE"}, Routes: []string{"POST /internal/v1/carts/*/remove"}}
	return rt.Serve(app.Service{Handler: handler, Public: true, Mesh: true, Ready: rt.Ready, Retry: retry})
}
