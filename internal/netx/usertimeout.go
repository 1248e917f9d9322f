// Package netx sets the kernel's TCP options that shoplab's connections share: how long data sent on a
// connection may stay unacknowledged before the kernel breaks it (TCP_USER_TIMEOUT).
//
// Without it, a request or statement sent on a kept-alive connection to a host that vanished (its VM powered
// off) waits out the kernel's retransmissions, about 15 minutes, and cancelling its context does not end the
// wait in every client. With it the connection fails with ETIMEDOUT after the timeout, so the caller can eject
// the instance and try another. The acknowledgement comes from the peer's kernel, not from its program, so a
// slow handler or query is not cut off.
package netx

import (
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
