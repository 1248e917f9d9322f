package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"shoplab/internal/balancer"
	"shoplab/lab/testkit"
)

// TestCheckedConn: after an idle spell, a write finds out whether the peer closed the connection, without
// sending anything on a dead one; a live connection writes as usual.
func TestCheckedConn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		peerClose bool
		want      error
	}{
		{"peer still there", false, nil},
		{"peer closed while idle", true, errStaleConn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := newCheckedConn(raw, true)
			defer c.Close()
			peer := <-accepted
			defer peer.Close()

			// One exchange, so the connection counts as kept alive. Each write follows a request's arrival
			// (requestClock), as in the gateway.
			requestClock.set(time.Now())
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := peer.Read(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := peer.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
			if tc.peerClose {
				peer.Close()
			}
			time.Sleep(idleCheckAfter + 20*time.Millisecond)
			requestClock.set(time.Now())
			if _, err := c.Write([]byte("next")); !errors.Is(err, tc.want) {
				t.Fatalf("write after idling: got %v; want %v", err, tc.want)
			}
		})
	}
}

// TestUpstreamUserTimeout: upstream connections give up on a host that stops acknowledging after
// upstreamUserTimeout, and that failure ejects the instance, while the front's own timeout does not.
func TestUpstreamUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newCheckedConn(raw, true)
	defer c.Close()
	got := testkit.UserTimeout(t, raw)
	if got != upstreamUserTimeout {
		t.Errorf("TCP_USER_TIMEOUT: got %v; want %v", got, upstreamUserTimeout)
	}

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"host stopped acknowledging", fmt.Errorf("read response: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"the front's own deadline", fasthttp.ErrTimeout, false},
	} {
		if got := balancer.ConnFailure(tc.err); got != tc.want {
			t.Errorf("balancer.ConnFailure(%s): got %v; want %v", tc.name, got, tc.want)
		}
	}
}
