// Command front is shoplab's only public entry: the browser storefront, and the gateway that routes
// /api/{service}/… to a passing instance of each public service, found through Consul.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"shoplab/internal/app"
	"shoplab/internal/consulx"
	"shoplab/internal/health"
	"shoplab/internal/svcclient"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "front:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, _, stderr io.Writer) error {
	env := app.NewEnv(getenv)
	request := env.Duration("FRONT_REQUEST_TIMEOUT", 50*time.Second)
	timeouts, terr := parseRouteTimeouts(env.String("FRONT_ROUTE_TIMEOUTS", "orders=30s"), env.Duration("FRONT_UPSTREAM_TIMEOUT", 10*time.Second), request)
	secure := env.String("FRONT_COOKIE_SECURE", "false") == "true"
	yield := env.String("FRONT_YIELD_BEFORE_READ", "true")
	limits := defaultServerLimits
	limits.conns = env.Int("FRONT_MAX_CONNS", limits.conns, 1, 1<<20)
	limits.connsPerAddr = env.Int("FRONT_MAX_CONNS_PER_ADDR", limits.connsPerAddr, 1, 1<<20)
	limits.head = env.Duration("FRONT_HEAD_TIMEOUT", limits.head)
	limits.bodyMemory = int64(env.Int("FRONT_BODY_MEMORY_MB", int(limits.bodyMemory>>20), 1, 1<<14)) << 20
	if err := env.Err(); err != nil {
		return err
	}
	if terr != nil {
		return terr
	}
	if yield != "true" && yield != "false" {
		return errors.New("FRONT_YIELD_BEFORE_READ must be true or false")
	}
	if request < time.Second {
		return errors.New("FRONT_REQUEST_TIMEOUT must be at least 1s")
	}
	rt, err := app.Boot(ctx, "front", getenv, stderr, nil)
	if err != nil {
		return err
	}
	defer rt.Close()
	services := consulx.WatchServiceList(rt.Ctx, rt.Consul, rt.Log, consulx.WatchOptions{})
	gw := newGateway(rt.Ctx, rt.Log, rt.Consul, rt.Mesh, services, timeouts, newGatewayMetrics(rt.Metrics))
	gw.yield = yield == "true"
	rt.Metrics.MustRegister(gatewayState{gw})
	go func() {
		wctx, cancel := context.WithTimeout(rt.Ctx, 30*time.Second)
		defer cancel()
		if services.Ready(wctx) == nil {
			gw.prime()
		}
	}()
	sess := &sessions{log: rt.Log.Named("session"), svc: svcclient.New(rt.Ctx, rt.Consul, rt.Mesh, rt.Log, svcclient.Options{}), secure: secure}
	ready := health.Check{Name: "discovery", Run: func(context.Context) error { return consulReadiness(services.Health()) }}
	api, rest, ops := routes(rt.Log, textLog(rt), gw, sess, rt.Metrics, append(rt.Checks(), ready))
	// The server gives every answer FRONT_REQUEST_TIMEOUT plus a margin to be written: a request the gateway
	// retries still ends with an answer, never a cut connection.
	engine := newEngine(api, rest, rt.Log, request+10*time.Second, limits)
	engine.yield = gw.yield
	return rt.Serve(app.Service{Engine: engine, Handler: ops, Ops: true, Public: false, Ready: ready.Run})
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

// textLog is the writer beneath the log in the text format, where the gateway writes its access lines itself;
// nil in the JSON format.
func textLog(rt *app.Runtime) io.Writer {
	if rt.Config.LogJSON {
		return nil
	}
	return rt.LogOutput()
}
