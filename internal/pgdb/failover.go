package pgdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"

	"shoplab/internal/netx"
)

// A database behind Patroni has no primary for a while during a failover: the old one shut down, the new one
// not yet promoted and passing in Consul DNS (about 7 s in CI's make vm-test of 2026-12-03, over 30 s on a
// starved host on 2026-12-04). What this file does about it:
//   - statements that certainly did not run (no connection could be opened, or a standby refused them) and
//     statements that only read run again on a fresh connection, with a capped backoff, for at most the DB's
//     retry wait (DB_RETRY_WAIT) and never past the request's deadline;
//   - what still fails is Unavailable, which services answer 503 with Retry-After rather than 500;
//   - a transaction is never replayed here: BeginTx is retried (nothing ran yet), a statement inside one is
//     not (the caller's whole operation would have to run again); nor is a statement database/sql would have
//     run again on lib/pq's ErrBadConn after sending it (guard.go);
//   - with a replica pool (ReadFrom), a read that misses the primary runs on a replica at once;
//   - a connection to a host that vanished breaks after TCPUserTimeout, and the pool's idle ones go with it.

// connectError marks an error from opening a connection: no statement of the caller's ran.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// TCPUserTimeout is how long data sent on a database connection may stay unacknowledged before the kernel
// breaks the connection (TCP_USER_TIMEOUT); idle connections are probed after KeepAliveIdle. Without them a
// statement sent to a host that vanished (its VM powered off) waits out the kernel's retransmissions, about
// 15 minutes, and cancelling its context does not end the wait (lib/pq sends a cancel request to the same
// dead host and keeps reading). The acknowledgement comes from the server's kernel, not from PostgreSQL, so a
// slow query is not cut off; a starved VM lab has stalled for seconds, hence not shorter.
const (
	TCPUserTimeout = 4 * time.Second
	KeepAliveIdle  = 5 * time.Second
)

// dialer is lib/pq's dialer with TCPUserTimeout and keepalive probes on TCP connections.
type dialer struct{ d net.Dialer }

// Dialer is the pools' dialer, for a connection a service makes to its database outside a pool (lib/pq's
// Listener, say): a dead database host is noticed in seconds there too.
func Dialer() pq.Dialer { return newDialer() }

func newDialer() dialer {
	return dialer{net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: KeepAliveIdle, Interval: 2 * time.Second, Count: 3},
		Control:         netx.UserTimeoutControl(TCPUserTimeout),
	}}
}

func (d dialer) Dial(network, address string) (net.Conn, error) {
	return d.d.Dial(network, address)
}

func (d dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.d.DialContext(ctx, network, address)
}

func (d dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.d.DialContext(ctx, network, address)
}

// Unavailable reports whether err means the database could not serve for want of a primary: no connection
// could be opened (refused, no such host, timed out, server starting or shutting down, a standby where a
// read-write session was asked for), the connection broke (the server shut down or its host went away), or
// a standby refused a write. These pass once a primary is back.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var (
		ce  *connectError
		mr  *MaybeRanError
		op  *net.OpError
		dns *net.DNSError
		pe  *pq.Error
	)
	switch {
	case errors.As(err, &ce), errors.As(err, &mr), errors.As(err, &op), errors.As(err, &dns),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &pe):
		return unavailableCode(pe.Code)
	}
	return false
}

// unavailableCode: connection exceptions (class 08), the server shutting down or starting (57P01 admin,
// 57P02 crash, 57P03 cannot connect now), and a read-only transaction refusing a write (25006, a standby).
func unavailableCode(code pq.ErrorCode) bool {
	switch code {
	case "57P01", "57P02", "57P03", "25006":
		return true
	}
	return len(code) == 5 && code[:2] == "08"
}

// notRun reports whether err proves the statement never ran: its connection could not be opened, or the
// server refused it as read-only.
func notRun(err error) bool {
	var (
		ce *connectError
		pe *pq.Error
	)
	return errors.As(err, &ce) || (errors.As(err, &pe) && pe.Code == "25006")
}

// kind is what retry may assume of an operation.
type kind int

const (
	kindBegin  kind = iota // the start of a transaction: nothing ran yet
	kindByText             // a statement, read or write as its text says (classify), worked out on failure
	kindRead               // a statement that only reads
	kindWrite              // a statement that may change data
)

// classify is a statement's kind by its text: a plain SELECT reads. A SELECT that calls a function which
// writes is not a read: stores run those with QueryWrite or QueryRowWrite, which say so.
func classify(query string) kind {
	if readOnly(query) {
		return kindRead
	}
	return kindWrite
}

// readOnly reports whether query only reads: a plain SELECT. Running one twice changes nothing.
func readOnly(query string) bool {
	q := strings.TrimSpace(query)
	if len(q) < 7 || !strings.EqualFold(q[:6], "select") {
		return false
	}
	switch q[6] {
	case ' ', '\n', '\t', '\r':
		return true
	}
	return false
}

// retry runs op (query's statement) on the primary, and again while it fails in a way safe to retry for its
// kind (retryable) and the wait allows: the wait ends at the DB's retry wait after the first failure or at
// ctx's deadline, whichever is sooner. It returns op's last error. A read that misses the primary runs on the
// replica pool at once when there is one (ReadFrom), and reads go there first for readsWindow after. Nothing
// is worked out before op has failed, not even a kindByText statement's kind: this runs around every statement.
func (d *DB) retry(ctx context.Context, k kind, query string, op func(reads bool) error) error {
	if d.reads != nil && time.Now().UnixNano() < d.readsUntil.Load() && k != kindBegin && k != kindWrite && readOnly(query) &&
		d.readsAllowed(ctx) {
		if err := op(true); err == nil || !Unavailable(err) {
			return err
		}
	}
	err := op(false)
	if err == nil || d.retryWait <= 0 {
		return err
	}
	if k == kindByText {
		k = classify(query)
	}
	if !retryable(k, err) {
		return err
	}
	d.purgeIdle(err)
	if k == kindRead && d.reads != nil {
		d.readsUntil.Store(time.Now().Add(readsWindow).UnixNano())
		if !d.readsAllowed(ctx) {
			d.log.Debug("the primary missed a read; the replica may be behind, so the read waits for a primary")
		} else if rerr := op(true); rerr == nil {
			d.log.Info("the primary missed a read; a replica served it", "error", err)
			return nil
		}
	}
	start := time.Now()
	deadline := start.Add(d.retryWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	// Gentle: every attempt while there is no primary is a DNS lookup through the local Consul agent, which a
	// starved lab needs for everything else too.
	backoff := 100 * time.Millisecond
	for attempt := 2; ; attempt++ {
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		t := time.NewTimer(min(backoff, left)) // the last attempt at the deadline
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if err = op(false); err == nil {
			d.log.Info("database answered again after a wait", "waited", time.Since(start).Round(time.Millisecond), "attempts", attempt)
			return nil
		}
		if !retryable(k, err) {
			return err
		}
		backoff = min(backoff*2, time.Second)
	}
}

// purgeIdle closes the pool's idle connections, at most once a second, after err broke an open connection:
// when a host vanished, the pool's other connections to it would each cost a statement TCPUserTimeout.
func (d *DB) purgeIdle(err error) {
	var ce *connectError
	if errors.As(err, &ce) || !Unavailable(err) {
		return
	}
	now := time.Now().UnixNano()
	last := d.purged.Load()
	if now-last < int64(time.Second) || !d.purged.CompareAndSwap(last, now) {
		return
	}
	d.DB.SetMaxIdleConns(0) // closes every idle connection
	d.DB.SetMaxIdleConns(poolSize)
}

// retryable is retry's rule: a statement outside a transaction that did not run, or a read; any Unavailable
// start of a transaction, since nothing of it ran yet.
func retryable(k kind, err error) bool {
	if k == kindBegin {
		return Unavailable(err)
	}
	return notRun(err) || (k == kindRead && Unavailable(err))
}
