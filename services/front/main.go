// Command front is shoplab's only public entry: the browser storefront, and the gateway that routes
// /api/{service}/… to a passing instance of each public service, found through Consul.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"shoplab/internal/app"
	"shoplab/internal/consulx"
	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/svcclient"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "front:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	base, err := app.Load("front", "127.0.0.1:8080", getenv)
	if err != nil {
		return err
	}
	env := app.NewEnv(getenv)
	timeouts, terr := parseRouteTimeouts(env.String("FRONT_ROUTE_TIMEOUTS", "orders=30s"), env.Duration("FRONT_UPSTREAM_TIMEOUT", 10*time.Second))
	secure := env.String("FRONT_COOKIE_SECURE", "false") == "true"
	if err := env.Err(); err != nil {
		return err
	}
	if terr != nil {
		return terr
	}
	log := base.Logger(stderr)
	consul, err := base.ConsulClient()
	if err != nil {
		return err
	}
	reg := metrics.New()
	services := consulx.WatchServiceList(ctx, consul, log, consulx.WatchOptions{})
	gw := newGateway(ctx, log, consul, services, timeouts, newGatewayMetrics(reg))
	reg.MustRegister(gatewayState{gw})
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if services.Ready(wctx) == nil {
			gw.prime()
		}
	}()
	sess := &sessions{log: log.Named("session"), svc: svcclient.New(ctx, consul, log, svcclient.Options{}), secure: secure}
	ready := health.Check{Name: "consul", Run: func(context.Context) error { return consulReadiness(services.Health()) }}
	handler := routes(log, gw, sess, reg, ready)
	return app.Serve(ctx, base, log, consul, app.Service{Handler: handler, Public: false, Ready: ready.Run})
}

// consulReadiness: the front can serve once Consul has answered; while Consul is unreachable it keeps routing
// with the last known instances and reports itself degraded, with the staleness.
func consulReadiness(h consulx.Health) error {
	switch {
	case !h.Answered:
		return fmt.Errorf("consul has not answered yet: %s", strings.TrimSpace(h.LastError))
	case !h.Connected:
		return health.Degraded(fmt.Errorf("consul unreachable for %s; routing with the last known instances (%s)", h.Staleness.Round(time.Millisecond), h.LastError))
	}
	return nil
}
