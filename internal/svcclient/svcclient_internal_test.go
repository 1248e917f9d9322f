package svcclient

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUserTimeout: connections to instances give up on a host that stops acknowledging after UserTimeout.
func TestUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Options{}.transport(nil).DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := int(UserTimeout.Milliseconds()); got != want {
		t.Errorf("TCP_USER_TIMEOUT: got %d ms; want %d", got, want)
	}
}
