package main

import (
	"errors"
	"net"
	"syscall"
	"time"
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

// checkedConn is an upstream TCP connection that, before the first write after an idle spell, looks (without
// reading anything) whether the instance has closed or reset it — the way Go's own transport notices a dead
// idle connection before it sends a request on it.
type checkedConn struct {
	net.Conn
	raw      syscall.RawConn
	lastRead time.Time
}

func newCheckedConn(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &checkedConn{Conn: c, raw: raw}
}

func (c *checkedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.lastRead = time.Now()
	}
	return n, err
}

func (c *checkedConn) Write(p []byte) (int, error) {
	if !c.lastRead.IsZero() && time.Since(c.lastRead) > idleCheckAfter {
		c.lastRead = time.Time{}
		if c.closedByPeer() {
			return 0, errStaleConn
		}
	}
	return c.Conn.Write(p)
}

// closedByPeer peeks at the socket without blocking: end of stream or a reset means the instance is gone.
// Waiting bytes (say, a TLS session ticket) or nothing at all mean it is still there.
func (c *checkedConn) closedByPeer() bool {
	var (
		n    int
		perr error
		buf  [1]byte
	)
	if err := c.raw.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // one look, never wait
	}); err != nil {
		return false
	}
	switch {
	case perr == nil:
		return n == 0
	case errors.Is(perr, syscall.EAGAIN), errors.Is(perr, syscall.EINTR):
		return false
	default:
		return true // ECONNRESET and the like
	}
}
