package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// runBenchProxy is "shoplab bench-proxy", which shoplab bench starts as a reference contender: the least a
// fasthttp proxy can do — one upstream, one HostClient, no discovery, balancing, metrics or logging. The front
// against it shows what the gateway's own work costs.
func runBenchProxy(ctx context.Context, args []string, _ func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "where to listen")
	upstream := fs.String("upstream", "", "the backend's host:port")
	strip := fs.String("strip", "", "a path prefix to remove before forwarding")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *upstream == "" {
		return usageError{"bench-proxy: --upstream is required"}
	}
	client := &fasthttp.HostClient{Addr: *upstream, MaxConns: 1024, MaxIdemponentCallAttempts: 1}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		req := &c.Request
		if p := req.URI().Path(); len(p) >= len(*strip) && string(p[:len(*strip)]) == *strip {
			req.URI().SetPathBytes(p[len(*strip):])
		}
		req.Header.Del("Connection")
		if err := client.DoTimeout(req, &c.Response, 10*time.Second); err != nil {
			c.Error(err.Error(), fasthttp.StatusBadGateway)
		}
	}}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	fmt.Fprintln(stderr, "bench-proxy: listening on", ln.Addr())
	return srv.Serve(ln)
}
