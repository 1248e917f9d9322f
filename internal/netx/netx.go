// Package netx holds what shoplab's connections ask of the kernel: how long data sent on a connection may stay
// unacknowledged before the kernel breaks it (TCP_USER_TIMEOUT), and a look at a socket without reading it
// (Peek), to tell a kept-alive connection the peer has closed before sending anything on it; and whom a
// client trusts (TrustingTransport).
//
// On TCP_USER_TIMEOUT:
// Without it, a request or statement sent on a kept-alive connection to a host that vanished (its VM powered
// off) waits out the kernel's retransmissions, about 15 minutes, and cancelling its context does not end the
// wait in every client. With it the connection fails with ETIMEDOUT after the timeout, so the caller can eject
// the instance and try another. The acknowledgement comes from the peer's kernel, not from its program, so a
// slow handler or query is not cut off.
package netx

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SetUserTimeout sets TCP_USER_TIMEOUT on the socket behind c to d (0: the kernel's default).
func SetUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	}); err != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", serr)
	}
	return nil
}

// UserTimeout reads TCP_USER_TIMEOUT back from the socket behind c.
func UserTimeout(c syscall.RawConn) (time.Duration, error) {
	var ms int
	var gerr error
	if err := c.Control(func(fd uintptr) {
		ms, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil {
		return 0, fmt.Errorf("read TCP_USER_TIMEOUT: %w", err)
	}
	if gerr != nil {
		return 0, fmt.Errorf("read TCP_USER_TIMEOUT: %w", gerr)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// UserTimeoutControl is a net.Dialer's Control that sets TCP_USER_TIMEOUT to d on every TCP connection it
// dials; other networks (a Unix socket) have nothing to time out and are left alone.
func UserTimeoutControl(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		return SetUserTimeout(c, d)
	}
}

// Peek looks at the socket behind c without reading from it or waiting: whether bytes are waiting to be read,
// and whether the peer closed or reset the connection (end of stream, or an error such as ECONNRESET).
func Peek(c syscall.RawConn) (waiting, closed bool) {
	var (
		n    int
		perr error
		buf  [1]byte
	)
	if err := c.Read(func(fd uintptr) bool {
		n, _, perr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return true // one look, never wait
	}); err != nil {
		return false, false
	}
	switch {
	case perr == nil:
		return n > 0, n == 0
	case errors.Is(perr, unix.EAGAIN), errors.Is(perr, unix.EINTR):
		return false, false
	default:
		return false, true
	}
}
