package pgdb_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestWithConnectTimeout(t *testing.T) {
	tests := []struct{ in, want string }{
		{"host=x dbname=y", "host=x dbname=y connect_timeout=5"},
		{"host=x connect_timeout=1", "host=x connect_timeout=1"},
		{"postgres://u@h/db", "postgres://u@h/db?connect_timeout=5"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?connect_timeout=5&sslmode=disable"},
		{"postgresql://u@h/db?connect_timeout=2", "postgresql://u@h/db?connect_timeout=2"},
	}
	for _, tc := range tests {
		if got := pgdb.WithConnectTimeout(tc.in, 5); got != tc.want {
			t.Errorf("WithConnectTimeout(%q): got %q; want %q", tc.in, got, tc.want)
		}
	}
}

var migrations = fstest.MapFS{
	"0001_a.up.sql":   {Data: []byte(`CREATE TABLE a (id int PRIMARY KEY);`)},
	"0001_a.down.sql": {Data: []byte(`DROP TABLE a;`)},
	"0002_b.up.sql":   {Data: []byte(`INSERT INTO a VALUES (1);`)},
	"0002_b.down.sql": {Data: []byte(`DELETE FROM a;`)},
}

// TestMigrateConcurrently: replicas starting together migrate once (the advisory lock) and all end current.
func TestMigrateConcurrently(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := pgdb.Open(ctx, dsn, 10*time.Second, hclog.NewNullLogger())
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			schema, err := pgdb.Migrate(ctx, db, migrations, hclog.NewNullLogger())
			if err == nil {
				err = schema.Check(ctx, db)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	db, _ := pgdb.Open(ctx, dsn, time.Second, hclog.NewNullLogger())
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows: got %d, %v; want 1 (the data migration ran once)", n, err)
	}

	// A database behind the binary is not ready.
	schema, err := pgdb.Migrate(ctx, db, migrations, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Check(ctx, db); err != nil {
		t.Fatalf("current schema: got %v; want nil", err)
	}
	if _, err := db.Exec(`UPDATE schema_migrations SET version = 1`); err != nil {
		t.Fatal(err)
	}
	if err := schema.Check(ctx, db); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("schema behind: got %v; want an error naming version 1", err)
	}
}

func TestOpenGivesUp(t *testing.T) {
	start := time.Now()
	_, err := pgdb.Open(context.Background(), "host=127.0.0.1 port=1 dbname=x sslmode=disable", 800*time.Millisecond, hclog.NewNullLogger())
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("got %v after %s; want an error within the wait", err, time.Since(start))
	}
}

// TestPreparedOnABusyPool: transactions holding every connection of the pool run statements never seen before
// without waiting for a connection to prepare them on (which would wait forever), and the statements end up
// prepared: PostgreSQL lists them.
func TestPreparedOnABusyPool(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := pgdb.Open(ctx, dsn, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetMaxOpenConns(2)
	db := pgdb.Wrap(raw)

	const query = `SELECT $1::int + 1`
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, 2) // as many transactions as connections
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					errs[i] = err
					return
				}
				defer tx.Rollback()
				var got int
				if err := tx.QueryRowContext(ctx, query, i).Scan(&got); err != nil {
					errs[i] = err
				} else if got != i+1 {
					t.Errorf("round %d: got %d; want %d", round, got, i+1)
				}
				time.Sleep(50 * time.Millisecond) // hold the connection while the other asks
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// A transaction that ran the statement finds it among its connection's prepared statements, once the
	// background preparation is done.
	isPrepared := func() bool {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var n int
		if err := tx.QueryRowContext(ctx, query, 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := tx.Tx.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	deadline := time.Now().Add(5 * time.Second)
	for !isPrepared() {
		if time.Now().After(deadline) {
			t.Fatal("statement: not prepared 5s after its first use")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
