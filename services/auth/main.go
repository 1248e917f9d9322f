// Command auth is shoplab's accounts and sessions service: it registers users, hashes their passwords with
// bcrypt, issues Ed25519-signed session tokens, publishes the keys that verify them, and revokes them on logout.
package main

import (
	"context"
	"embed"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/crypto/bcrypt"

	"shoplab/internal/app"
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
	env := app.NewEnv(getenv)
	cfg := config{
		tokenTTL:   env.Duration("AUTH_TOKEN_TTL", time.Hour),
		bcryptCost: env.Int("AUTH_BCRYPT_COST", bcrypt.DefaultCost, bcrypt.MinCost, bcrypt.MaxCost),
		keyFile:    env.String("AUTH_SIGNING_KEY_FILE", ""),
	}
	if err := env.Err(); err != nil {
		return err
	}
	rt, err := app.Boot(ctx, "auth", "127.0.0.1:8081", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	store := &postgresStore{db: rt.DB}
	key, err := loadSigningKey(rt.Ctx, store, cfg.keyFile)
	if err != nil {
		return err
	}
	pw, err := newPasswords(cfg.bcryptCost)
	if err != nil {
		return err
	}
	handler := routes(rt.Log, store, newIssuer(key, cfg.tokenTTL), pw, rt.Metrics, rt.Ready)
	return rt.Serve(app.Service{Handler: handler, Public: true, Ready: rt.Ready})
}
