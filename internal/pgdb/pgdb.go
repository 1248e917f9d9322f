// Package pgdb opens a service's PostgreSQL database, applies its embedded migrations and reports whether the
// database is ready to serve.
//
// Migrations use golang-migrate (its lib/pq driver and io/fs source): it is widely used and maintained, takes
// a PostgreSQL advisory lock so replicas starting together migrate once, records a dirty flag when a
// migration fails half-way, and reads the versioned up/down files we embed in each binary.
package pgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/hashicorp/go-hclog"
	"github.com/lib/pq"
)

// DefaultConnectTimeout is added to a DSN that does not set connect_timeout (seconds). Not shorter: on a
// starved VM lab a real connection (TCP, SCRAM) has been seen to take seconds, and a timeout that cuts those
// off fails requests that would have been served.
const DefaultConnectTimeout = 5

// WithConnectTimeout returns dsn with connect_timeout set unless it already sets one. It accepts both URL
// (postgres://…) and key=value DSNs.
func WithConnectTimeout(dsn string, seconds int) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		if q.Get("connect_timeout") == "" {
			q.Set("connect_timeout", fmt.Sprint(seconds))
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if strings.Contains(dsn, "connect_timeout=") {
		return dsn
	}
	return strings.TrimSpace(dsn + fmt.Sprintf(" connect_timeout=%d", seconds))
}

// poolSize is the most connections a service's pool opens and keeps idle: sized for a small service.
const poolSize = 20

// Pool is a service's pool on dsn, with DefaultConnectTimeout unless dsn sets one, TCPUserTimeout and
// keepalive probes, its failures to connect marked as such (failover.go). It opens no connection yet.
func Pool(dsn string) (*sql.DB, error) {
	dsn = WithConnectTimeout(dsn, DefaultConnectTimeout)
	if _, err := pq.NewConnector(dsn); err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector{dsn})
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)
	return db, nil
}

// Open opens dsn and waits until the database answers, retrying with a capped, jittered backoff for at most
// wait (the database may still be starting). The pool is sized for a small service.
func Open(ctx context.Context, dsn string, wait time.Duration, log hclog.Logger) (*sql.DB, error) {
	if dsn == "" {
		return nil, errors.New("open database: DATABASE_URL is empty")
	}
	db, err := Pool(dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}

	deadline := time.Now().Add(wait)
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pingCtx, cancel := context.WithTimeout(ctx, (DefaultConnectTimeout+1)*time.Second)
		err = db.PingContext(pingCtx)
		cancel()
		if err == nil {
			return db, nil
		}
		if ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			_ = db.Close()
			return nil, fmt.Errorf("open database: no answer after %d attempts: %w", attempt, err)
		}
		log.Warn("database not answering yet; retrying", "attempt", attempt, "error", err)
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			_ = db.Close()
			return nil, fmt.Errorf("open database: %w", context.Cause(ctx))
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// Schema knows the newest migration a binary carries, to tell whether its database is current.
type Schema struct {
	latest uint
}

// Migrate applies every pending up-migration in fsys (files like 0001_name.up.sql at its root) on a
// dedicated connection of db, and returns the Schema for readiness checks.
func Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, log hclog.Logger) (*Schema, error) {
	latest, err := latestVersion(fsys)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	drv, err := postgres.WithConnection(ctx, conn, &postgres.Config{})
	if err != nil {
		return nil, fmt.Errorf("migrate: prepare: %w", err)
	}
	src, err := iofs.New(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate: read migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "postgres", drv)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	defer m.Close()
	m.Log = migrateLog{log.Named("migrate")}

	// Up takes the advisory lock before it reads the version, so replicas starting together wait for one
	// another; the dirty flag is read under that lock too (read before it, a replica would see another's
	// migration in progress as dirty).
	err = m.Up()
	var dirty migrate.ErrDirty
	switch {
	case errors.As(err, &dirty):
		return nil, fmt.Errorf("migrate: database is dirty at version %d (a migration failed half-way); fix it by hand", dirty.Version)
	case errors.Is(err, migrate.ErrNoChange):
	case err != nil:
		return nil, fmt.Errorf("migrate: %w", err)
	default:
		log.Info("migrations applied", "version", latest)
	}
	return &Schema{latest: latest}, nil
}

func latestVersion(fsys fs.FS) (uint, error) {
	src, err := iofs.New(fsys, ".")
	if err != nil {
		return 0, fmt.Errorf("migrate: read migrations: %w", err)
	}
	defer src.Close()
	v, err := src.First()
	if err != nil {
		return 0, fmt.Errorf("migrate: no migrations: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, os.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, fmt.Errorf("migrate: list migrations: %w", err)
		}
		v = next
	}
}

// Check reports whether db answers and its schema is at the version this binary carries: the readiness check
// of every service with a database.
func (s *Schema) Check(ctx context.Context, db *sql.DB) error {
	var (
		version int64
		dirty   bool
	)
	err := db.QueryRowContext(ctx, `SELECT version, dirty FROM schema_migrations LIMIT 1`).Scan(&version, &dirty)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	switch {
	case dirty:
		return fmt.Errorf("database: schema is dirty at version %d", version)
	case uint(version) != s.latest:
		return fmt.Errorf("database: schema at version %d; this binary needs %d", version, s.latest)
	}
	return nil
}

type migrateLog struct{ log hclog.Logger }

func (l migrateLog) Printf(format string, v ...any) {
	l.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l migrateLog) Verbose() bool { return l.log.IsDebug() }
