package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func startFront(t *testing.T, st *testkit.Stack, env map[string]string) *testkit.Service {
	t.Helper()
	full := map[string]string{"CONSUL_HTTP_ADDR": st.Consul.HTTPAddr, "LOG_LEVEL": "info"}
	for k, v := range env {
		full[k] = v
	}
	return testkit.Run(t, "front", run, full)
}

func status(t *testing.T, front *testkit.Service) statusReport {
	t.Helper()
	var s statusReport
	r := testkit.Call(t, "GET", front.URL+"/status.json", "")
	if r.Status != 200 {
		t.Fatalf("status.json: got %d %s", r.Status, r.Body)
	}
	r.Decode(t, &s)
	return s
}

// waitStatus polls the front's status.json (bounded, 10 s) until ok holds, and returns that answer: the front
// learns the service list from a blocking query that may answer just after it starts serving.
func waitStatus(t *testing.T, front *testkit.Service, want string, ok func(statusReport) bool) statusReport {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s := status(t, front)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.json: got %+v; want %s within 10s", s.Services, want)
		}
	}
}

// gatewayRequests returns, per instance id of service, how many requests the gateway sent it.
func gatewayRequests(t *testing.T, front *testkit.Service, service string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, svc := range status(t, front).Services {
		if svc.Name != service {
			continue
		}
		for _, in := range svc.Instances {
			if in.Gateway != nil {
				out[in.ID] = in.Gateway.Requests
			}
		}
	}
	return out
}

// loop sends GETs to url from workers goroutines until stop is closed or max requests went out, and counts
// failures (anything but 200).
type loop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	done       sync.WaitGroup
}

func startLoop(url string, workers, max int) *loop { return startLoopWith(url, workers, max) }

// startLoopWith is startLoop with request headers (pairs).
func startLoopWith(url string, workers, max int, headers ...string) *loop {
	l := &loop{stop: make(chan struct{})}
	var sent atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for sent.Add(1) <= int64(max) {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				for i := 0; i+1 < len(headers); i += 2 {
					req.Header.Set(headers[i], headers[i+1])
				}
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					l.failed.Add(1)
					l.mu.Lock()
					if err != nil {
						l.failures = append(l.failures, err.Error())
					} else {
						l.failures = append(l.failures, resp.Status)
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *loop) finish() {
	close(l.stop)
	l.done.Wait()
}

func TestGateway(t *testing.T) {
	st := testkit.StartStack(t, "catalog", "payments")
	st.Add(t, "catalog", nil)
	front := startFront(t, st, nil)
	products := front.URL + "/api/catalog/v1/products?limit=2"

	t.Run("routes to catalog", func(t *testing.T) {
		r := testkit.Call(t, "GET", products, "", "X-Request-ID", "gw-test-1")
		if r.Status != 200 || !strings.Contains(r.String(), `"products"`) || r.Header.Get("X-Request-ID") != "gw-test-1" {
			t.Fatalf("got %d %s (request id %q); want 200 products with the request id echoed", r.Status, r.Body, r.Header.Get("X-Request-ID"))
		}
	})
	for _, tc := range []struct{ name, path, code string }{
		{"internal service", "/api/payments/v1/payments?order_id=x", "unknown_service"},
		{"unknown service", "/api/nothing/v1/x", "unknown_service"},
		{"bad service name", "/api/Cat%20alog/v1/x", "unknown_service"},
		{"internal endpoint", "/api/catalog/internal/v1/reservations/x", "not_found"},
		{"metrics of a service", "/api/catalog/metrics", "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.WantError(t, testkit.Call(t, "GET", front.URL+tc.path, ""), 404, tc.code)
		})
	}

	t.Run("both instances get traffic", func(t *testing.T) {
		for range 40 {
			if r := testkit.Call(t, "GET", products, ""); r.Status != 200 {
				t.Fatalf("got %d", r.Status)
			}
		}
		got := gatewayRequests(t, front, "catalog")
		if len(got) != 2 || got["catalog-1"] < 5 || got["catalog-2"] < 5 {
			t.Fatalf("requests per instance: got %v; want both catalog-1 and catalog-2 used", got)
		}
	})

	t.Run("a killed instance costs no failed GET", func(t *testing.T) {
		l := startLoop(products, 4, 2000)
		time.Sleep(300 * time.Millisecond)
		killed := time.Now()
		if err := st.Services["catalog"][0].Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		l.finish()
		if l.failed.Load() != 0 || l.ok.Load() < 100 {
			t.Fatalf("got %d ok and %d failed (%v); want zero failures", l.ok.Load(), l.failed.Load(), l.failures)
		}
		// The dead instance leaves the gateway's rotation: ejected at once, and gone once Consul marks it critical.
		before := gatewayRequests(t, front, "catalog")["catalog-1"]
		for range 20 {
			testkit.Call(t, "GET", products, "")
		}
		if after := gatewayRequests(t, front, "catalog")["catalog-1"]; after > before {
			t.Fatalf("catalog-1 got %d more requests after it died; want none", after-before)
		}
		if m := testkit.Call(t, "GET", front.OpsURL+"/metrics", "").String(); !strings.Contains(m, `shoplab_front_ejections_total{instance="catalog-1",service="catalog"}`) {
			t.Fatalf("metrics: want an ejection of catalog-1 recorded (the retry path ran)")
		}
		t.Logf("%d requests succeeded around the kill (%.1fs after it)", l.ok.Load(), time.Since(killed).Seconds())
	})

	t.Run("a new instance gets traffic within 1s", func(t *testing.T) {
		l := startLoop(products, 2, 100000)
		defer l.finish()
		st.Add(t, "catalog", nil) // returns once catalog-3 is passing in Consul
		passing := time.Now()
		for gatewayRequests(t, front, "catalog")["catalog-3"] == 0 {
			if time.Since(passing) > time.Second {
				t.Fatalf("catalog-3 got no traffic within 1s of passing")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("catalog-3 got traffic %s after it was passing", time.Since(passing).Round(time.Millisecond))
	})

	t.Run("consul stopped: routing goes on", func(t *testing.T) {
		if err := st.Consul.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		for i := range 50 {
			if r := testkit.Call(t, "GET", products, ""); r.Status != 200 {
				t.Fatalf("request %d with Consul down: got %d %s; want 200", i, r.Status, r.Body)
			}
		}
		r := testkit.Call(t, "GET", front.OpsURL+"/health/ready", "")
		var rep struct {
			Status string                       `json:"status"`
			Checks map[string]map[string]string `json:"checks"`
		}
		_ = json.Unmarshal(r.Body, &rep)
		if r.Status != 200 || rep.Status != "warn" || !strings.Contains(rep.Checks["discovery"]["error"], "last known") {
			t.Fatalf("ready with Consul down: got %d %s; want 200 warn naming the staleness", r.Status, r.Body)
		}
		if s := status(t, front); s.Consul.Connected || s.Consul.StalenessSeconds <= 0 {
			t.Fatalf("status with Consul down: got %+v; want disconnected and stale", s.Consul)
		}
	})
}

// TestNoPassingInstance: a public service whose only instance died answers 503 with the error body.
// TestInstanceRestartedInPlace: an instance killed and started again at the same address, faster than Consul
// notices, leaves the front's pool with dead keep-alive connections; the next GET still gets its answer.
func TestInstanceRestartedInPlace(t *testing.T) {
	st := testkit.StartStack(t)
	old := st.Add(t, "catalog", map[string]string{"CHECK_INTERVAL": "30s"}) // Consul must not see the gap
	front := startFront(t, st, nil)
	products := front.URL + "/api/catalog/v1/products?limit=2"
	l := startLoop(products, 4, 200) // several connections in the pool
	for deadline := time.Now().Add(20 * time.Second); l.ok.Load()+l.failed.Load() < 200 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	l.finish()
	if l.failed.Load() != 0 {
		t.Fatalf("before the restart: got %d failed (%v); want none", l.failed.Load(), l.failures)
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, "catalog-1", testkit.Binary(t, "services/catalog"), old.Env)
	for i := range 10 {
		if r := testkit.Call(t, "GET", products, ""); r.Status != 200 {
			t.Fatalf("GET %d after the restart: got %d %s; want 200", i+1, r.Status, r.Body)
		}
	}
	if m := testkit.Call(t, "GET", front.OpsURL+"/metrics", "").String(); !strings.Contains(m, `shoplab_front_ejections_total{instance="catalog-1",service="catalog"} 0`) {
		t.Fatalf("metrics: catalog-1 was ejected; want its dead connections replaced without that")
	}
}

func TestNoPassingInstance(t *testing.T) {
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	url := front.URL + "/api/catalog/v1/categories"
	if r := testkit.Call(t, "GET", url, ""); r.Status != 200 {
		t.Fatalf("before: got %d", r.Status)
	}
	if err := st.Services["catalog"][0].Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := testkit.Call(t, "GET", url, "")
		if r.Status == 503 {
			testkit.WantError(t, r, 503, "service_unavailable")
			return
		}
		if r.Status != 502 || time.Now().After(deadline) {
			t.Fatalf("got %d %s; want 502 while Consul still lists the dead instance, then 503", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
