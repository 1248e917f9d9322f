package pgdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/lib/pq"
	"golang.org/x/sys/unix"

	"shoplab/lab/testkit"
)

func TestUnavailable(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connect failed", &connectError{errors.New("session is read-only")}, true},
		{"dial refused, wrapped", fmt.Errorf("load product 1: %w", dial), true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "primary.catalog-db.service.consul", IsNotFound: true}, true},
		{"bad connection", fmt.Errorf("commit: %w", driver.ErrBadConn), true},
		{"eof", io.ErrUnexpectedEOF, true},
		{"connection reset", syscall.ECONNRESET, true},
		{"unacknowledged too long", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ETIMEDOUT}, true},
		{"admin shutdown", &pq.Error{Code: "57P01"}, true},
		{"crash shutdown", &pq.Error{Code: "57P02"}, true},
		{"starting up", &pq.Error{Code: "57P03"}, true},
		{"read-only transaction", &pq.Error{Code: "25006"}, true},
		{"connection failure", &pq.Error{Code: "08006"}, true},
		{"unique violation", &pq.Error{Code: "23505"}, false},
		{"serialization failure", &pq.Error{Code: "40001"}, false},
		{"query canceled", &pq.Error{Code: "57014"}, false},
		{"no rows", sql.ErrNoRows, false},
		{"deadline", context.DeadlineExceeded, false},
		{"canceled", context.Canceled, false},
		{"other", errors.New("boom"), false},
	}
	for _, tc := range tests {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("Unavailable(%s: %v): got %v; want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestStatementRetry(t *testing.T) {
	const (
		read  = "SELECT stock FROM products WHERE id = $1"
		write = "UPDATE products SET stock = stock - $2 WHERE id = $1"
	)
	dialFailed := &connectError{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		query string
		err   error
		want  bool
	}{
		{read, dialFailed, true},
		{write, dialFailed, true},                // never reached a server
		{write, &pq.Error{Code: "25006"}, true},  // a standby refused it
		{read, driver.ErrBadConn, true},          // a read may run twice
		{write, driver.ErrBadConn, false},        // a write may have run: the caller decides
		{write, &MaybeRanError{io.EOF}, false},   // the guard's word for it
		{read, &MaybeRanError{io.EOF}, true},     // a read may run twice
		{write, &pq.Error{Code: "57P01"}, false}, // terminated while it ran
		{read, &pq.Error{Code: "23505"}, false},  // not about the primary
		{"  select\n\tid FROM t", io.EOF, true},  // case and layout
		{"SELECTED_WRITE()", io.EOF, false},      // not a SELECT statement
		{"WITH x AS (DELETE FROM t) SELECT 1", io.EOF, false},
	}
	for _, tc := range tests {
		if got := retryable(classify(tc.query), tc.err); got != tc.want {
			t.Errorf("retryable(classify(%q), %v): got %v; want %v", tc.query, tc.err, got, tc.want)
		}
	}
	// A SELECT of a function that writes, run with QueryWrite or QueryRowWrite: again only if it did not run.
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{dialFailed, true},
		{&pq.Error{Code: "25006"}, true},
		{driver.ErrBadConn, false},
		{io.EOF, false},
		{&pq.Error{Code: "57P01"}, false},
	} {
		if got := retryable(kindWrite, tc.err); got != tc.want {
			t.Errorf("retryable(kindWrite, %v): got %v; want %v", tc.err, got, tc.want)
		}
	}
	// The start of a transaction: nothing of it ran, so any unavailability is retried.
	if !retryable(kindBegin, driver.ErrBadConn) || retryable(kindBegin, &pq.Error{Code: "23505"}) {
		t.Errorf("retryable(kindBegin, …): got the wrong rule; want every Unavailable error retried, nothing else")
	}
}

// TestDialerTimesOutUnacknowledgedData: the pools' TCP connections carry TCPUserTimeout and keepalive probes.
func TestDialerTimesOutUnacknowledgedData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := newDialer().DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepAlive, idle int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		keepAlive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		if serr == nil {
			idle, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if got := testkit.UserTimeout(t, c); got != TCPUserTimeout || keepAlive != 1 || idle != int(KeepAliveIdle.Seconds()) {
		t.Errorf("TCP_USER_TIMEOUT %v, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want %v, 1, %d",
			got, keepAlive, idle, TCPUserTimeout, int(KeepAliveIdle.Seconds()))
	}
}

// TestPurgeIdle: an open connection that broke closes the pool's idle connections (they may lead to the same
// vanished host); a failure to connect, or an ordinary error, leaves them.
func TestPurgeIdle(t *testing.T) {
	pool, err := Pool(testkit.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	d := WrapRetrying(pool, time.Second, hclog.NewNullLogger())
	fill := func() {
		t.Helper()
		conns := make([]*sql.Conn, 4)
		for i := range conns {
			if conns[i], err = pool.Conn(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			c.Close()
		}
	}
	tests := []struct {
		name     string
		err      error
		wantIdle int
	}{
		{"failed to connect", &connectError{syscall.ECONNREFUSED}, 4},
		{"unique violation", &pq.Error{Code: "23505"}, 4},
		{"connection broke", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ETIMEDOUT}, 0},
	}
	for _, tc := range tests {
		fill()
		d.purged.Store(0)
		d.purgeIdle(tc.err)
		if got := pool.Stats().Idle; got != tc.wantIdle {
			t.Errorf("%s: got %d idle connections; want %d", tc.name, got, tc.wantIdle)
		}
	}
	fill()
	d.purgeIdle(io.ErrUnexpectedEOF) // within a second of the last purge: left alone
	if got := pool.Stats().Idle; got != 4 {
		t.Errorf("a second purge within a second: got %d idle connections; want 4 (at most one a second)", got)
	}
}
