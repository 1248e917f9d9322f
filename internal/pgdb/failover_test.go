package pgdb_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/lab/pgcluster"
	"shoplab/lab/testkit"
)

// privateCluster is a PostgreSQL server of this test alone, which it may stop and start again on the same
// port and data: a failover's gap without a primary, as the services see it.
type privateCluster struct {
	t    *testing.T
	opts pgcluster.Options
	c    *pgcluster.Cluster
}

func newPrivateCluster(t *testing.T) *privateCluster {
	t.Helper()
	if _, err := pgcluster.BinDir(); err != nil {
		testkit.Need(t, "postgresql", err, pgcluster.InstallHint)
	}
	dir, err := os.MkdirTemp("", "shoplab-pgdb-")
	if err != nil {
		t.Fatal(err)
	}
	p := &privateCluster{t: t, opts: pgcluster.Options{Dir: dir, Fast: true, TrustHost: true}}
	p.start()
	p.opts.Port = p.c.Port
	t.Cleanup(func() {
		if p.c != nil {
			_ = p.c.Stop()
		}
		os.RemoveAll(dir)
	})
	return p
}

func (p *privateCluster) start() {
	p.t.Helper()
	c, err := pgcluster.Start(context.Background(), p.opts)
	if err != nil {
		p.t.Fatalf("start PostgreSQL: %v", err)
	}
	p.c = c
}

func (p *privateCluster) stop() {
	p.t.Helper()
	if err := p.c.Stop(); err != nil {
		p.t.Fatalf("stop PostgreSQL: %v", err)
	}
	p.c = nil
}

// open opens a database of the cluster's own as a service does (pgdb.Open); it is closed when the test ends.
func (p *privateCluster) open() *sql.DB {
	p.t.Helper()
	dsn, err := p.c.EnsureDatabase(context.Background(), "shop", "shop", "")
	if err != nil {
		p.t.Fatal(err)
	}
	db, err := pgdb.Open(context.Background(), dsn, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { db.Close() })
	return db
}

// admin runs a statement as the superuser.
func (p *privateCluster) admin(stmt string) {
	p.t.Helper()
	db, err := sql.Open("postgres", p.c.AdminDSN("postgres"))
	if err != nil {
		p.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		p.t.Fatalf("%s: %v", stmt, err)
	}
}

// TestFailoverGap: while the database is gone (shut down, then back on the same address, as a new primary
// appears after a failover), reads, writes that never reached a server and transactions wait for it instead
// of failing; a write a read-only server (a standby) refused runs once it is writable; when the database stays
// away longer than the retry wait, the error is Unavailable and answers 503 with Retry-After, within the wait.
func TestFailoverGap(t *testing.T) {
	pc := newPrivateCluster(t)
	ctx := context.Background()
	sdb := pc.open()
	db := pgdb.WrapRetrying(sdb, 20*time.Second, hclog.NewNullLogger())
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id text PRIMARY KEY, n int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	// Fill the pool with connections the shutdown will kill.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var one int
			_ = db.QueryRowContext(ctx, `SELECT 1 FROM pg_sleep(0.05)`).Scan(&one)
		})
	}
	wg.Wait()

	// 1. The database goes away for ~1.5 s while 8 clients each read, write and run a transaction.
	pc.stop()
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(1500 * time.Millisecond)
		pc.start()
	}()
	const clients = 8
	errs := make(chan error, 3*clients)
	began := time.Now()
	for i := range clients {
		wg.Go(func() {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil {
				errs <- fmt.Errorf("read: %w", err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO orders VALUES ($1, $2)`, fmt.Sprintf("w%d", i), i); err != nil {
				errs <- fmt.Errorf("write: %w", err)
			}
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				errs <- fmt.Errorf("begin: %w", err)
				return
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, `INSERT INTO orders VALUES ($1, $2)`, fmt.Sprintf("t%d", i), i); err != nil {
				errs <- fmt.Errorf("transaction: %w", err)
				return
			}
			if err := tx.Commit(); err != nil {
				errs <- fmt.Errorf("commit: %w", err)
			}
		})
	}
	wg.Wait()
	<-restarted
	close(errs)
	for err := range errs {
		t.Errorf("during the gap: got %v; want no error", err)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&rows); err != nil || rows != 2*clients {
		t.Fatalf("rows after the gap: got %d (%v); want %d, each written once", rows, err, 2*clients)
	}
	t.Logf("8 clients rode out a %.1fs gap in %.1fs", 1.5, time.Since(began).Seconds())

	// 2. A read-only server (a standby) refuses a write; the write runs once the server takes writes.
	pc.admin(`ALTER SYSTEM SET default_transaction_read_only = on`)
	pc.admin(`SELECT pg_reload_conf()`)
	time.Sleep(200 * time.Millisecond) // sessions read the new setting between statements
	promoted := make(chan struct{})
	go func() {
		defer close(promoted)
		time.Sleep(time.Second)
		pc.admin(`ALTER SYSTEM RESET default_transaction_read_only`)
		pc.admin(`SELECT pg_reload_conf()`)
	}()
	if _, err := db.ExecContext(ctx, `INSERT INTO orders VALUES ('after-standby', 1)`); err != nil {
		t.Errorf("write while read-only for 1s: got %v; want it to run once writable", err)
	}
	<-promoted

	// 3. Gone for longer than the wait: Unavailable, a 503 with Retry-After, and no longer than the wait.
	short := pgdb.WrapRetrying(sdb, 700*time.Millisecond, hclog.NewNullLogger())
	pc.stop()
	began = time.Now()
	_, err := short.ExecContext(ctx, `INSERT INTO orders VALUES ('never', 1)`)
	waited := time.Since(began)
	if err == nil || !pgdb.Unavailable(err) {
		t.Fatalf("write with no server: got %v; want an Unavailable error", err)
	}
	if waited < 500*time.Millisecond || waited > 5*time.Second {
		t.Errorf("write with no server gave up after %v; want about the 700ms wait", waited)
	}
	if !pgdb.Unavailable(fmt.Errorf("place order: %w", err)) {
		t.Errorf("a wrapped Unavailable error: got it not Unavailable; want it Unavailable (services answer 503 database_unavailable)")
	}
	// A request's own deadline ends the wait sooner.
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	began = time.Now()
	err = db.QueryRowContext(rctx, `SELECT count(*) FROM orders`).Scan(&rows)
	cancel()
	if waited := time.Since(began); err == nil || waited > 3*time.Second {
		t.Errorf("read with a 300ms deadline and no server: got %v after %v; want an error within about 300ms", err, waited)
	}
	pc.start()
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&rows); err != nil || rows != 2*clients+1 {
		t.Fatalf("rows at the end: got %d (%v); want %d", rows, err, 2*clients+1)
	}
}

// TestReadsFromReplica: while the primary is gone, a read runs on the replica pool (ReadFrom) at once instead
// of waiting out the retry wait, and the reads after it go there first — but only while the gate says the
// replica has every acknowledged commit; otherwise it waits for the primary like a write. A write never goes
// there, and still waits for the primary; once the window has passed, reads are the primary's again.
func TestReadsFromReplica(t *testing.T) {
	pc := newPrivateCluster(t)
	ctx := context.Background()
	sdb := pc.open()
	replica, err := pgdb.Pool(testkit.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	var current atomic.Bool // the gate: whether the replica may be read
	db := pgdb.WrapRetrying(sdb, 2*time.Second, hclog.NewNullLogger()).ReadFrom(replica, func(context.Context) bool { return current.Load() })
	// The same table on both, each saying which it is.
	for name, on := range map[string]interface {
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}{"primary": db, "replica": replica} {
		if _, err := on.ExecContext(ctx, `CREATE TABLE server (name text NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		if _, err := on.ExecContext(ctx, `INSERT INTO server VALUES ($1)`, name); err != nil {
			t.Fatal(err)
		}
	}
	read := func() (string, time.Duration, error) {
		start := time.Now()
		var name string
		err := db.QueryRowContext(ctx, `SELECT name FROM server`).Scan(&name)
		return name, time.Since(start), err
	}
	if got, _, err := read(); got != "primary" || err != nil {
		t.Fatalf("with the primary up: got %q, %v; want primary", got, err)
	}

	pc.stop()
	if got, took, err := read(); !pgdb.Unavailable(err) || took < 1500*time.Millisecond {
		t.Errorf("read with the primary gone and a replica that may be behind: got %q, %v after %v; want Unavailable after the 2s wait, never the replica", got, err, took)
	}
	current.Store(true)
	for i := range 3 {
		got, took, err := read()
		if got != "replica" || err != nil || took > time.Second {
			t.Errorf("read %d with the primary gone: got %q, %v after %v; want replica within 1s (not the 2s wait)", i+1, got, err, took)
		}
	}
	start := time.Now()
	_, err = db.ExecContext(ctx, `INSERT INTO server VALUES ('lost')`)
	if waited := time.Since(start); !pgdb.Unavailable(err) || waited < 1500*time.Millisecond {
		t.Errorf("write with the primary gone: got %v after %v; want Unavailable after the 2s wait, never on the replica", err, waited)
	}
	var n int
	if err := replica.QueryRowContext(ctx, `SELECT count(*) FROM server`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows on the replica: got %d, %v; want 1 (no write went there)", n, err)
	}

	pc.start()
	time.Sleep(10500 * time.Millisecond) // past the window since the last read missed the primary
	if got, _, err := read(); got != "primary" || err != nil {
		t.Errorf("with the primary back: got %q, %v; want primary", got, err)
	}
}
