package consulx_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// backend is a tiny HTTP server whose /health/ready answers 200, registered as one instance.
func backend(t *testing.T) (string, int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return host, p
}

func register(t *testing.T, c *testkit.Consul, id string) *consulx.Registrar {
	t.Helper()
	host, port := backend(t)
	r, err := consulx.Register(context.Background(), c.Client, consulx.Registration{
		Name: "widget", ID: id, Address: host, Port: port, Public: true, InitialPassing: true,
		CheckInterval: 500 * time.Millisecond,
	}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ids(in []consulx.Instance) []string {
	var out []string
	for _, i := range in {
		out = append(out, i.ID)
	}
	return out
}

// waitFor waits until the watcher's set has exactly want (ids), and returns how long that took.
func waitFor(t *testing.T, w *consulx.Watcher, changes <-chan []consulx.Instance, within time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		if got := ids(w.Instances()); equal(got, want) {
			return time.Since(start)
		}
		select {
		case <-changes:
		case <-deadline:
			t.Fatalf("instances: got %v; want %v within %s", ids(w.Instances()), want, within)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDiscovery(t *testing.T) {
	c := testkit.NewConsul(t)
	a := register(t, c, "widget-a")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := consulx.WatchService(ctx, c.Client, "widget", hclog.NewNullLogger(), consulx.WatchOptions{MaxBackoff: 200 * time.Millisecond})
	changes := make(chan []consulx.Instance, 100)
	w.OnChange(func(in []consulx.Instance) { changes <- in })
	if err := w.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, changes, time.Second, "widget-a")

	register(t, c, "widget-b")
	took := waitFor(t, w, changes, time.Second, "widget-a", "widget-b")
	t.Logf("a new instance was seen after %s", took)

	if err := a.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, w, changes, time.Second, "widget-b")
	t.Logf("a deregistered instance was gone after %s", took)
	if h := w.Health(); !h.Connected || h.Staleness != 0 {
		t.Fatalf("health while connected: got %+v; want connected, not stale", h)
	}

	// The agent goes away: the last known set stays, and the watcher says it is stale.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.Health().Connected {
		if time.Now().After(deadline) {
			t.Fatal("watcher still reports connected 5s after the agent stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := ids(w.Instances()); !equal(got, []string{"widget-b"}) {
		t.Fatalf("instances with the agent down: got %v; want the last known [widget-b]", got)
	}
	if h := w.Health(); h.Staleness < 300*time.Millisecond || h.LastError == "" {
		t.Fatalf("health with the agent down: got %+v; want stale ≥ 300ms with an error", h)
	}
}

func TestServiceList(t *testing.T) {
	c := testkit.NewConsul(t)
	register(t, c, "widget-a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := consulx.WatchServiceList(ctx, c.Client, hclog.NewNullLogger(), consulx.WatchOptions{})
	if err := l.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if known, public := l.Lookup("widget", consulx.TagPublic); !known || !public {
		t.Fatalf("widget: got known=%v public=%v; want both", known, public)
	}
	if known, _ := l.Lookup("gadget", consulx.TagPublic); known {
		t.Fatal("gadget: got known; want unknown")
	}
}

func TestRegistrationValidate(t *testing.T) {
	tests := []struct {
		name string
		reg  consulx.Registration
	}{
		{"no name", consulx.Registration{ID: "x", Address: "127.0.0.1", Port: 1}},
		{"no id", consulx.Registration{Name: "x", Address: "127.0.0.1", Port: 1}},
		{"hostname", consulx.Registration{Name: "x", ID: "x", Address: "localhost", Port: 1}},
		{"unspecified", consulx.Registration{Name: "x", ID: "x", Address: "0.0.0.0", Port: 1}},
		{"port 0", consulx.Registration{Name: "x", ID: "x", Address: "127.0.0.1"}},
	}
	for _, tc := range tests {
		if err := tc.reg.Validate(); err == nil {
			t.Errorf("%s: got no error; want one", tc.name)
		}
	}
	ok := consulx.Registration{Name: "x", ID: "x", Address: "192.168.56.10", Port: 80}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid registration: got %v; want nil", err)
	}
}

func TestRetryPolicy(t *testing.T) {
	orders := consulx.RetryPolicyFromMeta(consulx.RetryPolicy{
		Methods: []string{"GET", "HEAD"},
		Keyed:   []string{"POST /v1/orders", "POST /v1/products/*/stock-adjustments"},
		Routes:  []string{"POST /v1/orders/*/cancel"},
	}.Meta())
	none := consulx.RetryPolicyFromMeta(nil)
	keyed := http.Header{"Idempotency-Key": {"k1"}}
	tests := []struct {
		name   string
		p      consulx.RetryPolicy
		method string
		path   string
		h      http.Header
		want   bool
	}{
		{"GET", orders, "GET", "/v1/orders", nil, true},
		{"keyed POST", orders, "POST", "/v1/orders", keyed, true},
		{"POST without key", orders, "POST", "/v1/orders", http.Header{}, false},
		{"keyed POST elsewhere", orders, "POST", "/v1/sessions", keyed, false},
		{"wildcard segment", orders, "POST", "/v1/products/prd_1/stock-adjustments", keyed, true},
		{"wildcard needs a segment", orders, "POST", "/v1/products//stock-adjustments", keyed, false},
		{"route always", orders, "POST", "/v1/orders/ord_1/cancel", http.Header{}, true},
		{"longer path", orders, "POST", "/v1/orders/ord_1/cancel/x", http.Header{}, false},
		{"trailing slash", orders, "POST", "/v1/orders/", keyed, false},
		{"other method", orders, "PUT", "/v1/orders", keyed, false},
		{"no policy: GET", none, "GET", "/x", nil, true},
		{"no policy: keyed POST", none, "POST", "/v1/orders", keyed, false},
		{"no policy: DELETE", none, "DELETE", "/x", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			if h == nil {
				h = http.Header{}
			}
			if got := tc.p.Allows(tc.method, tc.path, h.Get("Idempotency-Key") != ""); got != tc.want {
				t.Fatalf("Allows(%s %s, key=%q): got %v; want %v", tc.method, tc.path, h.Get("Idempotency-Key"), got, tc.want)
			}
		})
	}
}
