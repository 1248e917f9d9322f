// Command auth is shoplab's accounts and sessions service: it registers users, hashes their passwords with
// bcrypt, issues Ed25519-signed session tokens that carry the user's roles, publishes the keys that verify
// them (rotated on a schedule, sealed at rest), revokes them on logout, and limits login and registration
// attempts per client address and per account.
//
// "auth admin …" is the operator's command on the machine that runs auth: grant or revoke the admin role,
// list the admins, or mint a token (see admin.go).
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/crypto/bcrypt"

	"shoplab/internal/app"
	"shoplab/internal/consulx"
	"shoplab/internal/topology"
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
	tokenTTL        time.Duration // AUTH_TOKEN_TTL, default 1h
	bcryptCost      int           // AUTH_BCRYPT_COST, default 10
	hashConcurrency int           // AUTH_HASH_CONCURRENCY: password hashes at once, default max(2, GOMAXPROCS)
	hashWait        time.Duration // AUTH_HASH_WAIT: how long a request waits for a hashing slot, default 250ms
	limitAddress    limit         // AUTH_LIMIT_ADDRESS, default 60/1m
	limitPair       limit         // AUTH_LIMIT_PAIR, default 5/15m
	limitAccount    limit         // AUTH_LIMIT_ACCOUNT, default 100/1h
	trusted         string        // AUTH_TRUSTED_CALLERS: mesh services whose X-Forwarded-For is believed, default the topology's entry
	keyRotation     time.Duration // AUTH_KEY_ROTATION, default 24h
	keyRetireGrace  time.Duration // AUTH_KEY_RETIRE_GRACE: kept published beyond the token TTL, default 1m
	kek             []byte        // AUTH_KEY_ENCRYPTION_KEY or AUTH_KEY_ENCRYPTION_KEY_FILE
}

func loadConfig(getenv func(string) string) (config, error) {
	env := app.NewEnv(getenv)
	cfg := config{
		tokenTTL:        env.Duration("AUTH_TOKEN_TTL", time.Hour),
		bcryptCost:      env.Int("AUTH_BCRYPT_COST", bcrypt.DefaultCost, bcrypt.MinCost, bcrypt.MaxCost),
		hashConcurrency: env.Int("AUTH_HASH_CONCURRENCY", max(2, runtime.GOMAXPROCS(0)), 1, 256),
		hashWait:        env.Duration("AUTH_HASH_WAIT", 250*time.Millisecond),
		trusted:         env.String("AUTH_TRUSTED_CALLERS", defaultTrusted(topology.Default())),
		keyRotation:     env.Duration("AUTH_KEY_ROTATION", 24*time.Hour),
		keyRetireGrace:  env.Duration("AUTH_KEY_RETIRE_GRACE", time.Minute),
	}
	if err := env.Err(); err != nil {
		return cfg, err
	}
	if env.String("AUTH_SIGNING_KEY_FILE", "") != "" {
		return cfg, errors.New("AUTH_SIGNING_KEY_FILE is no longer read: signing keys now rotate and are kept sealed in auth's " +
			"database; set AUTH_KEY_ENCRYPTION_KEY_FILE instead (README, Configuration)")
	}
	if cfg.tokenTTL < time.Second || cfg.keyRotation < time.Second {
		return cfg, errors.New("AUTH_TOKEN_TTL and AUTH_KEY_ROTATION must be at least 1s")
	}
	var err error
	if cfg.limitAddress, err = parseLimit("AUTH_LIMIT_ADDRESS", env.String("AUTH_LIMIT_ADDRESS", "60/1m")); err != nil {
		return cfg, err
	}
	if cfg.limitPair, err = parseLimit("AUTH_LIMIT_PAIR", env.String("AUTH_LIMIT_PAIR", "5/15m")); err != nil {
		return cfg, err
	}
	if cfg.limitAccount, err = parseLimit("AUTH_LIMIT_ACCOUNT", env.String("AUTH_LIMIT_ACCOUNT", "100/1h")); err != nil {
		return cfg, err
	}
	if _, err := parseTrusted(cfg.trusted); err != nil {
		return cfg, err
	}
	cfg.kek, err = app.LoadKey(getenv, "AUTH_KEY_ENCRYPTION_KEY", kekSize)
	if errors.Is(err, app.ErrNoKey) {
		err = fmt.Errorf("auth needs a key-encryption key for its signing keys: %w", err)
	}
	return cfg, err
}

// policy is the signing-key lifecycle: a superseded key stays published while a token it signed may still be
// accepted (its TTL plus the verifiers' 30 s expiry leeway) and the grace beyond.
func (c config) policy() keyPolicy {
	return keyPolicy{rotation: c.keyRotation, retireAfter: c.tokenTTL + 30*time.Second + c.keyRetireGrace}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "admin" {
		return runAdmin(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q (the only subcommand is: auth admin)", args[0])
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	rt, err := app.Boot(ctx, "auth", getenv, stderr, migrationFiles)
	if err != nil {
		return err
	}
	defer rt.Close()
	store := &postgresStore{db: rt.DB}
	seal, err := newSealer(cfg.kek)
	if err != nil {
		return err
	}
	keys := newKeyRing(store, seal, cfg.policy(), rt.Log)
	if err := keys.refresh(rt.Ctx); err != nil {
		return err
	}
	go keys.run(rt.Ctx, cfg.policy().checkEvery())
	pw, err := newPasswords(cfg.bcryptCost, cfg.hashConcurrency, cfg.hashWait)
	if err != nil {
		return err
	}
	trusted, _ := parseTrusted(cfg.trusted)
	lim := &limiter{store: store, address: cfg.limitAddress, pair: cfg.limitPair, account: cfg.limitAccount, trusted: trusted}
	go lim.janitor(rt.Ctx, rt.Log.Named("limits"), 5*time.Minute)
	rt.Log.Info("limits", "address", cfg.limitAddress.String(), "pair", cfg.limitPair.String(), "account", cfg.limitAccount.String(), "hash_concurrency", cfg.hashConcurrency)
	verifier := localVerifier(store)
	go verifier.RefreshEvery(rt.Ctx, rt.Config.JWKSRefresh, func(err error) { rt.Log.Warn("refreshing the key set failed", "error", err) })
	revoked := newFeed()
	revoked.listen(rt.Ctx, rt.Config.DatabaseURL, rt.Log.Named("revocations"))
	go forgetRevocations(rt.Ctx, rt.Log.Named("revocations"), store, 10*time.Minute)
	handler := routes(rt.Log, store, verifier, newIssuer(keys, cfg.tokenTTL), pw, lim, revoked, rt.Metrics, rt.Checks())
	// Logins and registrations are never sent twice; logout is idempotent.
	retry := consulx.RetryPolicy{Methods: []string{"GET", "HEAD"}, Routes: []string{"DELETE /v1/sessions/current"}}
	return rt.Serve(app.Service{Handler: handler, Public: true, Mesh: true, Ready: rt.Ready, Retry: retry})
}
