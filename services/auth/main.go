// Command auth is shoplab's accounts and sessions service: it registers users, hashes their passwords with
// bcrypt, issues Ed25519-signed session tokens, publishes the keys that verify them, and revokes them on logout.
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

	"golang.org/x/crypto/bcrypt"

	"shoplab/internal/app"
	"shoplab/internal/metrics"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

// config is auth's own configuration on top of app.Config.
type config struct {
	tokenTTL   time.Duration // AUTH_TOKEN_TTL, default 1h
	bcryptCost int           // AUTH_BCRYPT_COST, default 10
	keyFile    string        // AUTH_SIGNING_KEY_FILE: keep the signing key in this file instead of the database
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := app.Load("auth", "127.0.0.1:8081", getenv)
	if err != nil {
		return err
	}
	env := app.NewEnv(getenv)
	cfg := config{
		tokenTTL:   env.Duration("AUTH_TOKEN_TTL", time.Hour),
		bcryptCost: env.Int("AUTH_BCRYPT_COST", bcrypt.DefaultCost, bcrypt.MinCost, bcrypt.MaxCost),
		keyFile:    env.String("AUTH_SIGNING_KEY_FILE", ""),
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
	store := &postgresStore{db: db}

	key, err := loadSigningKey(ctx, store, cfg.keyFile)
	if err != nil {
		return err
	}
	issuer := newIssuer(key, cfg.tokenTTL)
	pw, err := newPasswords(cfg.bcryptCost)
	if err != nil {
		return err
	}
	consul, err := base.ConsulClient()
	if err != nil {
		return err
	}
	handler := routes(log, store, issuer, pw, reg, ready)
	return app.Serve(ctx, base, log, consul, app.Service{Handler: handler, Public: true, Ready: ready})
}
