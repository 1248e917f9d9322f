package svcclient

import (
	"context"
	"net"
	"testing"

	"shoplab/lab/testkit"
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
	got := testkit.UserTimeout(t, c)
	if got != UserTimeout {
		t.Errorf("TCP_USER_TIMEOUT: got %v; want %v", got, UserTimeout)
	}
}
