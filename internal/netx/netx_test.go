package netx

import (
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestUserTimeoutControl: a dialer with UserTimeoutControl sets TCP_USER_TIMEOUT on TCP connections and leaves
// a Unix socket alone.
func TestUserTimeoutControl(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	tests := []struct {
		name    string
		network string
		address string
		timeout time.Duration
		want    time.Duration
	}{
		{"tcp, 3 s", "tcp", tcp.Addr().String(), 3 * time.Second, 3 * time.Second},
		{"tcp4, 250 ms", "tcp4", tcp.Addr().String(), 250 * time.Millisecond, 250 * time.Millisecond},
		{"tcp, 0 keeps the kernel's default", "tcp", tcp.Addr().String(), 0, 0},
		{"unix socket untouched", "unix", sock.Addr().String(), 3 * time.Second, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := net.Dialer{Timeout: 2 * time.Second, Control: UserTimeoutControl(tt.timeout)}
			c, err := d.Dial(tt.network, tt.address)
			if err != nil {
				t.Fatalf("dial: got %v; want a connection", err)
			}
			defer c.Close()
			if got := userTimeout(t, c); got != tt.want {
				t.Errorf("TCP_USER_TIMEOUT: got %v; want %v", got, tt.want)
			}
		})
	}
}

// TestSetUserTimeout: an open connection's timeout can be set, and a closed one reports an error.
func TestSetUserTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := SetUserTimeout(raw, 5*time.Second); err != nil {
		t.Fatalf("SetUserTimeout: got %v; want nil", err)
	}
	if got := userTimeout(t, c); got != 5*time.Second {
		t.Errorf("TCP_USER_TIMEOUT: got %v; want 5s", got)
	}
	c.Close()
	if err := SetUserTimeout(raw, time.Second); err == nil {
		t.Error("SetUserTimeout on a closed connection: got nil; want an error")
	}
}

// userTimeout reads c's TCP_USER_TIMEOUT back from the kernel; -1 for a socket that is not TCP.
func userTimeout(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	if _, ok := c.(*net.TCPConn); !ok {
		return -1
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	d, err := UserTimeout(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPeek: an idle connection, one with bytes waiting, and one its peer closed, told apart without reading.
func TestPeek(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tests := []struct {
		name            string
		peer            func(c net.Conn)
		waiting, closed bool
	}{
		{"idle", func(net.Conn) {}, false, false},
		{"bytes waiting", func(c net.Conn) { c.Write([]byte("FATAL")) }, true, false},
		{"closed by the peer", func(c net.Conn) { c.Close() }, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			tt.peer(s)
			raw, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var waiting, closed bool
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if waiting, closed = Peek(raw); waiting == tt.waiting && closed == tt.closed {
					break
				}
			}
			if waiting != tt.waiting || closed != tt.closed {
				t.Errorf("Peek: got waiting %v, closed %v; want %v, %v", waiting, closed, tt.waiting, tt.closed)
			}
		})
	}
}
