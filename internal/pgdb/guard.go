package pgdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lib/pq"

	"shoplab/internal/netx"
)

// A statement never runs twice behind its caller's back. database/sql runs a statement again, on another
// connection, whenever the driver answers driver.ErrBadConn, and lib/pq answers that not only when it could not
// send the statement but also when the connection broke while it waited for the answer: the server closed it
// (io.EOF) or sent a FATAL error (the backend terminated, the server shutting down). By then the statement may
// have run and committed — a backend killed while it waited for the synchronous standby has committed locally —
// and the second run creates an account again (a false 409 email_taken), a session (a duplicate key), a count.
//
// So every connection of a pool is a guardConn: before a statement it looks at its socket (without reading),
// and a connection the server has closed or written to while it sat idle is reported as driver.ErrBadConn —
// nothing was sent, and database/sql may safely try another connection, as it did before. After a statement
// was sent, driver.ErrBadConn becomes a *MaybeRanError, which database/sql returns as it is: Unavailable, so a
// service answers 503 with Retry-After, and the caller decides (a checkout with its Idempotency-Key, a
// registration that will find its account). The connection is dropped either way (lib/pq marks it bad).

// MaybeRanError is a statement whose connection broke after it was sent: it may have run, and is not run again.
type MaybeRanError struct{ err error }

func (e *MaybeRanError) Error() string {
	return "the database connection broke after the statement was sent (it may have run): " + e.err.Error()
}

// connector opens connections with lib/pq, each a guardConn, and marks its failures as connectErrors. Each
// connection gets a connector of its own, so the guard knows which socket is the connection's.
type connector struct{ dsn string }

func (c connector) Driver() driver.Driver { return &pq.Driver{} }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	pc, err := pq.NewConnector(c.dsn)
	if err != nil {
		return nil, &connectError{err}
	}
	d := &socketDialer{dialer: newDialer()}
	pc.Dialer(d)
	gc := &guardConn{}
	conn, err := pq.ConnectorWithNoticeHandler(pc, gc.notice).Connect(ctx)
	if err != nil {
		return nil, &connectError{err}
	}
	gc.Conn, gc.sock = conn, d.connected()
	return gc, nil
}

// socketDialer dials as the pool's dialer does and keeps the socket of the last connection dialed while the
// connection opens; later dials (lib/pq's cancel requests) are not the connection's.
type socketDialer struct {
	dialer
	mu   sync.Mutex
	sock syscall.RawConn
	done bool
}

func (d *socketDialer) Dial(network, address string) (net.Conn, error) {
	return d.keep(d.dialer.Dial(network, address))
}

func (d *socketDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.keep(d.dialer.DialContext(ctx, network, address))
}

func (d *socketDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	return d.keep(d.dialer.DialTimeout(network, address, timeout))
}

func (d *socketDialer) keep(c net.Conn, err error) (net.Conn, error) {
	if err != nil {
		return c, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.done {
		d.sock = nil
		if sc, ok := c.(syscall.Conn); ok {
			d.sock, _ = sc.SyscallConn()
		}
	}
	return c, nil
}

// connected ends the keeping and returns the connection's socket (nil if it has none to look at).
func (d *socketDialer) connected() syscall.RawConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.done = true
	return d.sock
}

// guardConn is lib/pq's connection with the guard around every statement (see above); everything else passes
// through.
type guardConn struct {
	driver.Conn
	sock syscall.RawConn
	// notReplicated: the server stopped waiting for the synchronous standby during the last statement or
	// commit (its wait was cancelled: the request's deadline); the commit is local only.
	notReplicated atomic.Bool
}

// A commit is acknowledged once the synchronous standby has applied it (synchronous_commit remote_apply in
// the VM lab's Patroni clusters), which is what lets a read go to that standby while the primary is away. But
// when the wait for the standby is cancelled (the caller's deadline), PostgreSQL reports the commit a success
// with only a warning ("The transaction has already committed locally, but might not have been replicated to
// the standby"): the guard turns that success into a MaybeRanError, so no client is told of a write the
// standby may not have.

// errNotReplicated is what such a commit becomes.
var errNotReplicated = errors.New("committed on the primary, but its wait for the synchronous standby was cancelled")

// notice hears the server's notices and warnings on the connection.
func (c *guardConn) notice(e *pq.Error) {
	if strings.Contains(e.Message, "synchronous replication") || strings.HasPrefix(e.Detail, "The transaction has already committed locally") {
		c.notReplicated.Store(true)
	}
}

// before reports driver.ErrBadConn for a connection that cannot take a statement: lib/pq marked it bad, or the
// server closed it or wrote to it (a FATAL message) while it sat idle. Nothing is sent.
func (c *guardConn) before() error {
	c.notReplicated.Store(false)
	if v, ok := c.Conn.(driver.Validator); ok && !v.IsValid() {
		return driver.ErrBadConn
	}
	if c.sock != nil {
		if waiting, closed := netx.Peek(c.sock); waiting || closed {
			return driver.ErrBadConn
		}
	}
	return nil
}

// after keeps database/sql from running a statement again that was sent, and reports a commit the synchronous
// standby may not have.
func (c *guardConn) after(err error) error {
	if errors.Is(err, driver.ErrBadConn) {
		return &MaybeRanError{err}
	}
	if c.notReplicated.Swap(false) && err == nil {
		return &MaybeRanError{errNotReplicated}
	}
	return err
}

func (c *guardConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if err := c.before(); err != nil {
		return nil, err
	}
	r, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	return r, c.after(err)
}

func (c *guardConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if err := c.before(); err != nil {
		return nil, err
	}
	r, err := c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	return r, c.after(err)
}

// PrepareContext prepares on the server (nothing runs: database/sql may do it again) and guards the statement.
func (c *guardConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if err := c.before(); err != nil {
		return nil, err
	}
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &guardStmt{Stmt: st, c: c}, nil
}

func (c *guardConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &guardTx{Tx: tx, c: c}, nil
}

// guardTx is a transaction of a guardConn: its commit is reported as the guard says.
type guardTx struct {
	driver.Tx
	c *guardConn
}

func (t *guardTx) Commit() error {
	t.c.notReplicated.Store(false)
	return t.c.after(t.Tx.Commit())
}

func (c *guardConn) Ping(ctx context.Context) error { return c.Conn.(driver.Pinger).Ping(ctx) }

func (c *guardConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *guardConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

func (c *guardConn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// guardStmt is a prepared statement of a guardConn, guarded the same way.
type guardStmt struct {
	driver.Stmt
	c *guardConn
}

func (s *guardStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if err := s.c.before(); err != nil {
		return nil, err
	}
	r, err := s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
	return r, s.c.after(err)
}

func (s *guardStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if err := s.c.before(); err != nil {
		return nil, err
	}
	r, err := s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	return r, s.c.after(err)
}
