package pgdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

// viaProxy is dsn with its port replaced by a proxy's in front of the test cluster.
func viaProxy(t *testing.T, dsn string) (string, *testkit.Proxy) {
	t.Helper()
	pg := testkit.Postgres(t)
	proxy := testkit.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	return strings.ReplaceAll(dsn, fmt.Sprintf("port=%d", pg.Port), fmt.Sprintf("port=%d", proxy.Port())), proxy
}

// TestNoStatementRunsTwice: a write whose connection breaks after the server ran it (the proxy drops the
// server's answer and closes the connection) is not run again by database/sql: the row exists once, and the
// caller gets a MaybeRanError, which is Unavailable (a service answers 503).
// Before the guard each case ran twice: lib/pq reports the closed connection as driver.ErrBadConn.
func TestNoStatementRunsTwice(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	direct, err := Pool(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	ctx := context.Background()
	if _, err := direct.ExecContext(ctx, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	proxied, proxy := viaProxy(t, dsn)
	pool, err := Pool(proxied)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	tests := []struct {
		name string
		run  func(v string) error
	}{
		{"exec with arguments", func(v string) error {
			_, err := pool.ExecContext(ctx, `INSERT INTO t (v) VALUES ($1)`, v)
			return err
		}},
		{"exec without arguments", func(v string) error {
			_, err := pool.ExecContext(ctx, `INSERT INTO t (v) VALUES ('`+v+`')`)
			return err
		}},
		{"a query that writes", func(v string) error {
			var id int
			return pool.QueryRowContext(ctx, `INSERT INTO t (v) VALUES ($1) RETURNING id`, v).Scan(&id)
		}},
		{"a prepared statement", func(v string) error {
			st, err := pool.PrepareContext(ctx, `INSERT INTO t (v) VALUES ($1)`)
			if err != nil {
				return fmt.Errorf("prepare: %w", err)
			}
			defer st.Close()
			_, err = st.ExecContext(ctx, v)
			return err
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := fmt.Sprintf("case-%d", i)
			if err := pool.PingContext(ctx); err != nil { // a connection open before the cut
				t.Fatal(err)
			}
			proxy.CutAfterReply([]byte("INSERT 0 1"), 1)
			err := tt.run(v)
			var mr *MaybeRanError
			if !errors.As(err, &mr) || !Unavailable(err) {
				t.Errorf("error: got %v (%T); want a MaybeRanError, Unavailable", err, err)
			}
			var n int
			if err := direct.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE v = $1`, v).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("rows written: got %d; want 1 (the statement ran once)", n)
			}
		})
	}
}

// TestIdleConnectionClosedByTheServer: a pooled connection the server closed while it sat idle (a restart, a
// failover, a terminated backend) is noticed before a statement is sent on it, and the statement runs on a new
// connection: no error, run once.
func TestIdleConnectionClosedByTheServer(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	pool, err := Pool(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := pool.ExecContext(ctx, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := pool.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var ok bool
	if err := other.QueryRowContext(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate the pool's backend: got %v, %v; want it terminated", ok, err)
	}
	time.Sleep(100 * time.Millisecond) // the server's FATAL message and its close reach the socket
	for i := range 3 {
		if _, err := pool.ExecContext(ctx, `INSERT INTO t (v) VALUES ($1)`, fmt.Sprint(i)); err != nil {
			t.Fatalf("insert %d after the idle connection was closed: got %v; want it run on a new connection", i, err)
		}
	}
	var n int
	if err := pool.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows: got %d, %v; want 3", n, err)
	}
}
