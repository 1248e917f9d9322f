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

	"github.com/lib/pq"
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
