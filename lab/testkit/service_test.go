package testkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestRunPicksPortsAgain: a service whose picked port was taken before it could bind it is started again on
// other ports (test packages run side by side and pick ports the same way).
func TestRunPicksPortsAgain(t *testing.T) {
	var calls atomic.Int32
	run := func(ctx context.Context, _ []string, getenv func(string) string, _, _ io.Writer) error {
		if calls.Add(1) == 1 {
			return fmt.Errorf("listen on %s (LISTEN_ADDR): %w", getenv("LISTEN_ADDR"),
				&net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)})
		}
		ln, err := net.Listen("tcp", getenv("LISTEN_ADDR"))
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Request-ID", "r")
		})}
		go func() { <-ctx.Done(); srv.Close() }()
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			return err
		}
		return nil
	}
	s := Run(t, "fake", run, map[string]string{"OPS_LISTEN_ADDR": ""})
	if got := calls.Load(); got != 2 {
		t.Fatalf("starts: got %d; want 2 (the first on a taken port)", got)
	}
	if s.OpsURL != s.URL {
		t.Errorf("a service live on its only port: got OpsURL %s; want its URL %s", s.OpsURL, s.URL)
	}
}
