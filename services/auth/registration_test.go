package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/lab/testkit"
)

// checkStatus returns the aggregated status of service's checks in Consul ("" when it is not registered).
func checkStatus(t *testing.T, c *api.Client, service string) string {
	t.Helper()
	checks, _, err := c.Health().Checks(service, nil)
	if err != nil {
		t.Fatalf("consul health: %v", err)
	}
	if len(checks) == 0 {
		return ""
	}
	return checks.AggregatedStatus()
}

func waitStatus(t *testing.T, c *api.Client, service, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := checkStatus(t, c, service)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("consul status of %s: got %q; want %q within %s", service, got, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRegistrationFollowsReadiness runs the real binary: it registers and is passing, its check turns critical
// when its database has been unreachable for DB_FAILOVER_GRACE (1 s here) and passing again when it returns,
// and SIGTERM deregisters it.
func TestRegistrationFollowsReadiness(t *testing.T) {
	consul := testkit.NewConsul(t)
	pg := testkit.Postgres(t)
	dsn := testkit.NewDatabase(t)
	proxy := testkit.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	viaProxy := replacePort(dsn, pg.Port, proxy.Port())

	bin := testkit.Binary(t, "services/auth")
	env := testkit.AuthEnv()
	for k, v := range map[string]string{
		"DATABASE_URL": viaProxy, "CONSUL_HTTP_ADDR": consul.HTTPAddr, "CHECK_INTERVAL": "300ms", "CHECK_TIMEOUT": "250ms",
		"DB_FAILOVER_GRACE": "1s",
	} {
		env[k] = v
	}
	svc := testkit.Start(t, "auth", bin, env)
	took := waitStatus(t, consul.Client, "auth", api.HealthPassing, 5*time.Second)
	t.Logf("passing %s after /health/live answered", took)

	entries, _, err := consul.Client.Health().Service("auth", "", true, nil)
	if err != nil || len(entries) != 1 {
		t.Fatalf("passing instances: got %d, %v; want 1", len(entries), err)
	}
	e := entries[0].Service
	_, port, _ := net.SplitHostPort(svc.Addr)
	if e.Address != "127.0.0.1" || fmt.Sprint(e.Port) != port || e.Meta["public"] != "true" || !contains(e.Tags, "public") {
		t.Fatalf("registration: got address %s port %d meta %v tags %v; want 127.0.0.1:%s, public", e.Address, e.Port, e.Meta, e.Tags, port)
	}
	// Prometheus' discovery scrapes an instance where its meta says: for a mesh service, the plain operations port.
	if e.Meta["metrics_port"] == "" || e.Meta["metrics_port"] != e.Meta["ops_port"] {
		t.Fatalf("registration meta: got metrics_port %q, ops_port %q; want both, the same port", e.Meta["metrics_port"], e.Meta["ops_port"])
	}

	proxy.Cut()
	took = waitStatus(t, consul.Client, "auth", api.HealthCritical, 5*time.Second)
	t.Logf("critical %s after the database was cut off", took)
	if took < 700*time.Millisecond {
		t.Errorf("critical %s after the database was cut off; want it only after the 1s grace", took)
	}
	r := testkit.Call(t, "GET", svc.OpsURL+"/health/ready", "")
	if r.Status != 503 {
		t.Fatalf("/health/ready without database: got %d %s; want 503", r.Status, r.Body)
	}

	proxy.Restore()
	took = waitStatus(t, consul.Client, "auth", api.HealthPassing, 10*time.Second)
	t.Logf("passing again %s after the database returned", took)

	if err := svc.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if got := checkStatus(t, consul.Client, "auth"); got != "" {
		t.Fatalf("after SIGTERM: got status %q; want the instance deregistered", got)
	}
	services, _, err := consul.Client.Catalog().Service("auth", "", nil)
	if err != nil || len(services) != 0 {
		t.Fatalf("catalog after SIGTERM: got %d instances, %v; want 0", len(services), err)
	}
}

func replacePort(dsn string, from, to int) string {
	return strings.ReplaceAll(dsn, fmt.Sprintf("port=%d", from), fmt.Sprintf("port=%d", to))
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}
