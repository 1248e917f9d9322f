package pgdb

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DB is a *sql.DB whose statements are prepared once per connection and then reused: PostgreSQL parses,
// analyses and plans each statement once instead of on every call (with lib/pq an unprepared statement with
// arguments is parsed and planned every time — the largest part of the database's CPU on a checkout, measured
// in docs/benchmarks.md). Stores use it like a *sql.DB; statements are keyed by their SQL text, which in this
// code base is constant.
//
// Statements also ride out a failover: see failover.go.
type DB struct {
	*sql.DB

	retryWait time.Duration
	log       hclog.Logger

	reads      *sql.DB      // a pool on a member of the cluster, for reads while the primary is away; nil without
	readsUntil atomic.Int64 // unix nanoseconds: until then reads go to reads first (a read missed the primary)
	gate       func(context.Context) bool
	gateUntil  atomic.Int64 // unix nanoseconds: until then the gate's last yes holds

	purged atomic.Int64 // unix nanoseconds of the last purge of idle connections

	mu        sync.RWMutex
	stmts     map[string]*sql.Stmt
	preparing map[string]bool
}

// maxPrepared bounds the statements kept prepared; beyond it, queries run unprepared.
const maxPrepared = 256

// Wrap returns db with statement preparation, and no retries.
func Wrap(db *sql.DB) *DB {
	return WrapRetrying(db, 0, hclog.NewNullLogger())
}

// WrapRetrying returns db with statement preparation, whose statements wait up to retryWait for a primary
// (failover.go says which).
func WrapRetrying(db *sql.DB, retryWait time.Duration, log hclog.Logger) *DB {
	return &DB{DB: db, retryWait: retryWait, log: log, stmts: map[string]*sql.Stmt{}, preparing: map[string]bool{}}
}

// ReadFrom makes reads (plain SELECTs outside a transaction) that find no primary run on reads instead, and
// keep going there for readsWindow after each such miss — but only while gate says the member reads reaches
// has applied every commit acknowledged to a client: the primary itself, or the synchronous standby of a
// cluster that acknowledges a commit once that standby applied it (synchronous_commit remote_apply; the guard
// reports a commit whose wait for it was cancelled as failed). Then no read there is older than a write a
// client was told succeeded. The gate's yes is trusted for gateTrust; its no sends reads to wait for a primary.
// A write never goes to reads. Call it before the DB is used.
func (d *DB) ReadFrom(reads *sql.DB, gate func(context.Context) bool) *DB {
	d.reads, d.gate = reads, gate
	return d
}

// gateTrust is how long a yes from ReadFrom's gate is trusted: reads without a primary ask it at most once a
// second.
const gateTrust = time.Second

// readsAllowed reports whether the replica pool may serve a read now (ReadFrom's gate).
func (d *DB) readsAllowed(ctx context.Context) bool {
	now := time.Now().UnixNano()
	if now < d.gateUntil.Load() {
		return true
	}
	if !d.gate(ctx) {
		return false
	}
	d.gateUntil.Store(now + int64(gateTrust))
	return true
}

// Close closes the replica pool, if any, and the primary's.
func (d *DB) Close() error {
	if d.reads != nil {
		d.reads.Close()
	}
	return d.DB.Close()
}

// readsWindow is how long reads keep going to the replica after one missed the primary.
const readsWindow = 10 * time.Second

// stmt returns query's prepared statement, or nil the first time: then the statement is prepared in the
// background, on whatever connection the pool frees next, while this call runs unprepared. Preparing in line
// would need a second connection, which a transaction holding one of a busy pool's last could wait for
// forever.
func (d *DB) stmt(query string) *sql.Stmt {
	d.mu.RLock()
	st := d.stmts[query]
	d.mu.RUnlock()
	if st != nil {
		return st
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if st = d.stmts[query]; st != nil || d.preparing[query] || len(d.stmts)+len(d.preparing) >= maxPrepared {
		return st
	}
	d.preparing[query] = true
	go d.prepare(query)
	return nil
}

func (d *DB) prepare(query string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.DB.PrepareContext(ctx, query)
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.preparing, query)
	if err == nil {
		d.stmts[query] = st
	} // else it keeps running unprepared until a later call prepares it; its own error comes back from there
}

// ExecContext runs query with args on a prepared statement.
func (d *DB) ExecContext(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	err = d.retry(ctx, kindByText, query, func(reads bool) error {
		if reads {
			res, err = d.reads.ExecContext(ctx, query, args...)
		} else if st := d.stmt(query); st != nil {
			res, err = st.ExecContext(ctx, args...)
		} else {
			res, err = d.DB.ExecContext(ctx, query, args...)
		}
		return err
	})
	return res, err
}

// QueryContext runs query with args on a prepared statement.
func (d *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.query(ctx, kindByText, query, args)
}

// QueryWrite is QueryContext for a query that changes data though it reads like one (a SELECT of a function
// that writes): after a failover it runs again only if it certainly did not run the first time.
func (d *DB) QueryWrite(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.query(ctx, kindWrite, query, args)
}

func (d *DB) query(ctx context.Context, k kind, query string, args []any) (rows *sql.Rows, err error) {
	err = d.retry(ctx, k, query, func(reads bool) error {
		if reads {
			rows, err = d.reads.QueryContext(ctx, query, args...)
		} else if st := d.stmt(query); st != nil {
			rows, err = st.QueryContext(ctx, args...)
		} else {
			rows, err = d.DB.QueryContext(ctx, query, args...)
		}
		return err
	})
	return rows, err
}

// QueryRowContext runs query with args on a prepared statement.
func (d *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.queryRow(ctx, kindByText, query, args)
}

// QueryRowWrite is QueryRowContext for a query that changes data though it reads like one, as QueryWrite.
func (d *DB) QueryRowWrite(ctx context.Context, query string, args ...any) *sql.Row {
	return d.queryRow(ctx, kindWrite, query, args)
}

func (d *DB) queryRow(ctx context.Context, k kind, query string, args []any) (row *sql.Row) {
	_ = d.retry(ctx, k, query, func(reads bool) error {
		if reads {
			row = d.reads.QueryRowContext(ctx, query, args...)
		} else if st := d.stmt(query); st != nil {
			row = st.QueryRowContext(ctx, args...)
		} else {
			row = d.DB.QueryRowContext(ctx, query, args...)
		}
		return row.Err() // the query's own error; sql.ErrNoRows only comes from Scan
	})
	return row
}

// BeginTx starts a transaction whose statements are prepared the same way. Starting one is retried like a
// statement that did not run: nothing of the transaction's ran yet.
func (d *DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*Tx, error) {
	var tx *sql.Tx
	err := d.retry(ctx, kindBegin, "", func(bool) (err error) {
		tx, err = d.DB.BeginTx(ctx, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Tx{Tx: tx, db: d}, nil
}

// Tx is a *sql.Tx whose statements use the DB's prepared statements.
type Tx struct {
	*sql.Tx
	db *DB
}

// ExecContext runs query with args in the transaction, prepared.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.db.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

// QueryContext runs query with args in the transaction, prepared.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.db.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query with args in the transaction, prepared.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.db.stmt(query); st != nil {
		return t.Tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}
