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

	"shoplab/internal/app"
	"shoplab/internal/consulx"
	"shoplab/internal/idem"
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
	key, err := app.LoadKey(getenv, "PAYMENTS_FINGERPRINT_KEY", idem.KeySize)
	if err != nil {
		return fmt.Errorf("payments needs a key for the fingerprints of charges under an Idempotency-Key: %w", err)
	}
	rt, err := app.Boot(ctx, "payments", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	handler := routes(rt.Log, &postgresStore{db: rt.DB}, idem.NewFingerprinter(key), rt.Metrics, rt.Checks())
	// Charges repeat only under their Idempotency-Key; voids and refunds are idempotent per order and payment.
	retry := consulx.RetryPolicy{Methods: []string{"GET", "HEAD"}, Keyed: []string{"POST /v1/payments"},
		Routes: []string{"POST /v1/payments/void", "POST /v1/payments/*/refund"}}
	return rt.Serve(app.Service{Handler: handler, Public: false, Mesh: true, Ready: rt.Ready, Retry: retry})
}
