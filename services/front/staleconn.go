package main

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"shoplab/internal/netx"
)

// errStaleConn is what writing a request on a kept-alive connection returns when the instance closed or reset
// it while it sat idle: nothing of the request left, so sending it again on a fresh connection is safe whatever
// its method.
var errStaleConn = errors.New("kept-alive connection closed by the instance while idle")

// idleCheckAfter is how long a connection must have been idle before its next request checks that the instance
// is still at the other end. An instance restarted in place takes longer than this to come back (a process
// start, its certificate from the agent: ~45 ms measured at the quickest), so every connection to its old
// process is checked once the new one serves; a connection busy under load costs no check.
const idleCheckAfter = 5 * time.Millisecond

// requestClock is the time the newest request through the gateway arrived (set by apiHandler.serve, which reads
// the clock anyway). Upstream connections read their time from it instead of the system clock: every request
// is written upstream after its arrival is set here, so a write always sees a current time, and a read marks a
// time no later than the true one — at worst a connection is checked once more than it needs to be.
var requestClock clock

// clock is a time shared without locks, in nanoseconds of the wall clock.
type clock struct{ ns atomic.Int64 }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() int64      { return c.ns.Load() }

// checkedConn is an upstream TCP connection that, before the first write after an idle spell, looks (without
// reading anything) whether the instance has closed or reset it — the way Go's own transport notices a dead
// idle connection before it sends a request on it.
type checkedConn struct {
	net.Conn
	raw      syscall.RawConn
	lastRead int64 // requestClock at the last read that returned bytes; 0 before any
	aw       afterWrite
}

// upstreamUserTimeout is how long a request written upstream may stay unacknowledged before the kernel breaks
// the connection (TCP_USER_TIMEOUT). Without it a request sent on a kept-alive connection to an instance whose
// VM was powered off waits out the front's whole deadline (504) and is never retried; with it the connection
// fails with ETIMEDOUT after this long, the instance is ejected (balancer.ConnFailure) and a retryable request goes to
// another instance within its deadline. The acknowledgement comes from the instance's kernel, so a slow
// handler is not cut off.
const upstreamUserTimeout = 5 * time.Second

// newCheckedConn wraps an upstream connection and sets its upstreamUserTimeout; yield steps aside before a
// read that follows a write (yieldconn.go).
func newCheckedConn(c net.Conn, yield bool) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	// Best effort: a connection without it still works, it only waits longer on a vanished instance.
	_ = netx.SetUserTimeout(raw, upstreamUserTimeout)
	return &checkedConn{Conn: c, raw: raw, aw: afterWrite{on: yield}}
}

func (c *checkedConn) Read(p []byte) (int, error) {
	c.aw.beforeRead()
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead = requestClock.now()
	}
	return n, err
}

func (c *checkedConn) Write(p []byte) (int, error) {
	if c.lastRead != 0 && time.Duration(requestClock.now()-c.lastRead) > idleCheckAfter {
		c.lastRead = 0
		if c.closedByPeer() {
			return 0, errStaleConn
		}
	}
	c.aw.wrote = true
	return c.Conn.Write(p)
}

// closedByPeer peeks at the socket without blocking: end of stream or a reset means the instance is gone.
// Waiting bytes (say, a TLS session ticket) or nothing at all mean it is still there.
func (c *checkedConn) closedByPeer() bool {
	_, closed := netx.Peek(c.raw)
	return closed
}
