package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/lab/testkit"
)

// seriesCount counts the front's request-metric series (shoplab_http_*), leaving out the routes that
// background traffic (Consul's checks, scrapes) adds to on its own.
func seriesCount(t *testing.T, front *testkit.Service) int {
	t.Helper()
	n := 0
	for _, line := range strings.Split(testkit.Call(t, "GET", front.OpsURL+"/metrics", "").String(), "\n") {
		if strings.HasPrefix(line, "shoplab_http_") && !strings.Contains(line, `route="GET /health/`) && !strings.Contains(line, `route="GET /metrics"`) {
			n++
		}
	}
	return n
}

// TestJunkMethodsDoNotGrowMetrics: made-up HTTP methods, on routed and unrouted paths, get 405 or 404 with the
// error body and add no metric series, however many arrive.
func TestJunkMethodsDoNotGrowMetrics(t *testing.T) {
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	paths := []string{"/api/catalog/v1/products", "/", "/status.json", "/api/nothing-here/x", "/no/such/page", "/session"}
	send := func(i int) testkit.Resp {
		return testkit.Call(t, fmt.Sprintf("ZZZ%04d", i), front.URL+paths[i%len(paths)], "")
	}
	for i := range 2 * len(paths) { // every kind once, so the bounded series exist
		r := send(i)
		if r.Status != 405 && r.Status != 404 {
			t.Fatalf("junk method on %s: got %d %s; want 405 or 404", paths[i%len(paths)], r.Status, r.Body)
		}
		testkit.WantError(t, r, r.Status, "")
	}
	// The legitimate routes of this test and of Consul's check exist before counting.
	testkit.Call(t, "GET", front.URL+"/api/catalog/v1/products", "")
	for _, p := range []string{"/health/ready", "/metrics"} {
		testkit.Call(t, "GET", front.OpsURL+p, "")
	}
	before := seriesCount(t, front)
	for i := range 1000 {
		if r := send(100 + i); r.Status != 405 && r.Status != 404 {
			t.Fatalf("junk method %d: got %d", i, r.Status)
		}
	}
	testkit.Call(t, "GET", front.URL+"/api/catalog/v1/products", "")
	if after := seriesCount(t, front); after != before {
		t.Fatalf("metric series after 1000 junk methods: got %d; want %d (unchanged)", after, before)
	}
	if m := testkit.Call(t, "GET", front.OpsURL+"/metrics", "").String(); strings.Contains(m, "ZZZ") {
		t.Fatal("metrics: a client-chosen method became a label")
	}
}

// flakyBackend is an instance that reads each request and then drops the connection without answering: the
// worst case for a retry decision (the service may have acted on it).
type flakyBackend struct {
	attempts atomic.Int64
	port     int
}

func startFlaky(t *testing.T) *flakyBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyBackend{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health/ready" {
			return
		}
		f.attempts.Add(1)
		panic(http.ErrAbortHandler) // the connection is dropped, no answer
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return f
}

func registerBackend(t *testing.T, st *testkit.Stack, name, id string, port int, public bool, meta map[string]string) *consulx.Registrar {
	t.Helper()
	reg, err := consulx.Register(context.Background(), st.Consul.Client, consulx.Registration{
		Name: name, ID: id, Address: "127.0.0.1", Port: port, Public: public, InitialPassing: true, Meta: meta,
		CheckInterval: 500 * time.Millisecond, CheckTimeout: 3 * time.Second,
	}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	return reg
}

// TestRetriesFollowTheServicePolicy: the gateway sends a request a second time only when the service's own
// policy (its Consul meta) says that route may be repeated; a login-like POST is never sent twice, even with
// an Idempotency-Key.
func TestRetriesFollowTheServicePolicy(t *testing.T) {
	st := &testkit.Stack{Consul: testkit.NewConsul(t)}
	a, b := startFlaky(t), startFlaky(t)
	policy := consulx.RetryPolicy{Methods: []string{"GET"}, Keyed: []string{"POST /v1/things"}, Routes: []string{"POST /v1/things/*/cancel"}}.Meta()
	registerBackend(t, st, "flaky", "flaky-a", a.port, true, policy)
	registerBackend(t, st, "flaky", "flaky-b", b.port, true, policy)
	front := startFront(t, st, nil)

	tests := []struct {
		method, path, key string
		attempts          int64
	}{
		{"GET", "/v1/things", "", 2},
		{"POST", "/v1/things", "k1", 2},
		{"POST", "/v1/things", "", 1},
		{"POST", "/v1/things/t1/cancel", "", 2},
		{"POST", "/v1/sessions", "k2", 1}, // not declared: never repeated
		{"DELETE", "/v1/things/t1", "", 1},
		{"PUT", "/v1/things/t1", "k3", 1},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path+" key="+tc.key, func(t *testing.T) {
			before := a.attempts.Load() + b.attempts.Load()
			h := []string{}
			if tc.key != "" {
				h = append(h, "Idempotency-Key", tc.key)
			}
			body := ""
			if tc.method == "POST" || tc.method == "PUT" {
				body = `{"x":1}`
			}
			r := testkit.Call(t, tc.method, front.URL+"/api/flaky"+tc.path, body, h...)
			if r.Status != 502 {
				t.Fatalf("got %d %s; want 502 (both instances drop the connection)", r.Status, r.Body)
			}
			if got := a.attempts.Load() + b.attempts.Load() - before; got != tc.attempts {
				t.Fatalf("attempts reaching the service: got %d; want %d", got, tc.attempts)
			}
		})
	}
}

// TestUnpublishedServiceStopsBeingRouted: a service re-registered without the public tag is not routed within
// a second; published again, it is routed again.
func TestUnpublishedServiceStopsBeingRouted(t *testing.T) {
	st := &testkit.Stack{Consul: testkit.NewConsul(t)}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	reg := registerBackend(t, st, "gizmo", "gizmo-1", port, true, nil)
	front := startFront(t, st, nil)
	url := front.URL + "/api/gizmo/v1/x"
	if r := testkit.Call(t, "GET", url, ""); r.Status != 200 {
		t.Fatalf("public: got %d %s; want 200", r.Status, r.Body)
	}
	_ = reg.Deregister(context.Background())
	registerBackend(t, st, "gizmo", "gizmo-1", port, false, nil)
	changed := time.Now()
	for {
		r := testkit.Call(t, "GET", url, "")
		if r.Status == 404 {
			testkit.WantError(t, r, 404, "unknown_service")
			break
		}
		if time.Since(changed) > time.Second {
			t.Fatalf("re-registered without the public tag: still %d after 1s; want 404", r.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("unrouted %s after re-registration", time.Since(changed).Round(time.Millisecond))
}

// TestPublicStatusHidesInternals: the public status names every service and instance and its health, but no
// address, port or check output; services' health endpoints are not reachable through the front.
func TestPublicStatusHidesInternals(t *testing.T) {
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	testkit.Call(t, "GET", front.URL+"/api/catalog/v1/categories", "")
	waitStatus(t, front, "catalog with its one instance passing", func(s statusReport) bool {
		for _, svc := range s.Services {
			if svc.Name == "catalog" {
				return svc.Passing == 1 && len(svc.Instances) == 1 && svc.Instances[0].Status == "passing"
			}
		}
		return false
	})
	r := testkit.Call(t, "GET", front.URL+"/status.json", "")
	_, port, _ := net.SplitHostPort(st.Services["catalog"][0].Addr)
	for _, leak := range []string{"127.0.0.1", port, `"address"`, `"output"`, `"error"`, "HTTP GET"} {
		if strings.Contains(r.String(), leak) {
			t.Errorf("status.json shows %q: %s", leak, r.Body)
		}
	}
	for _, p := range []string{"/api/catalog/health/ready", "/api/catalog/health/live"} {
		testkit.WantError(t, testkit.Call(t, "GET", front.URL+p, ""), 404, "not_found")
	}
}

// TestNothingInternalOnThePublicPort: the front's health and metrics (instance ids, Consul's errors) answer on
// its operations port alone; its public port answers them 404, and the operations port serves nothing else
// (issue 28 §7: before, /metrics and /health/ready answered anyone on :8080).
func TestNothingInternalOnThePublicPort(t *testing.T) {
	st := testkit.StartStack(t)
	front := startFront(t, st, nil)
	if front.OpsURL == front.URL {
		t.Fatalf("the front's operations URL: got its public one, %s; want a port of its own", front.URL)
	}
	for _, p := range []string{"/metrics", "/health/ready", "/health/live"} {
		testkit.WantError(t, testkit.Call(t, "GET", front.URL+p, ""), 404, "not_found")
		// Readiness may still say 503 (the mesh certificate on its way): served there, either way.
		if r := testkit.Call(t, "GET", front.OpsURL+p, ""); r.Status != 200 && !(p == "/health/ready" && r.Status == 503) {
			t.Errorf("operations port %s: got %d %s; want 200", p, r.Status, r.Body)
		}
	}
	for _, p := range []string{"/", "/status", "/status.json"} {
		if r := testkit.Call(t, "GET", front.URL+p, ""); r.Status != 200 {
			t.Errorf("public %s: got %d; want 200", p, r.Status)
		}
		testkit.WantError(t, testkit.Call(t, "GET", front.OpsURL+p, ""), 404, "not_found")
	}
	// Consul checks the operations port, and Prometheus finds it in the registration.
	services, err := st.Consul.Client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	_, opsPort, _ := net.SplitHostPort(strings.TrimPrefix(front.OpsURL, "http://"))
	for _, svc := range services {
		if svc.Service == "front" && (svc.Meta["metrics_port"] != opsPort || svc.Meta["ops_port"] != opsPort) {
			t.Errorf("the front's registration meta: got %v; want metrics_port and ops_port %s", svc.Meta, opsPort)
		}
	}
}

// TestClientAddressIsNotSpoofable: login attempts through the front count against the address the front saw,
// whatever X-Forwarded-For the client sends — one header, two, three — so auth's per-address limit holds.
func TestClientAddressIsNotSpoofable(t *testing.T) {
	st := &testkit.Stack{Consul: testkit.NewConsul(t), Services: map[string][]*testkit.Service{}, DSN: map[string]string{}}
	st.Add(t, "auth", map[string]string{"AUTH_LIMIT_ADDRESS": "3/1m", "AUTH_LIMIT_ACCOUNT": "100/1m"})
	front := startFront(t, st, nil)
	// post sends body to path with one X-Forwarded-For header per value.
	post := func(path, body string, xff ...string) testkit.Resp {
		t.Helper()
		req, err := http.NewRequest("POST", front.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for _, v := range xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return testkit.Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
	}
	for i := range 3 {
		xff := []string{fmt.Sprintf("203.0.113.%d", i+1)}
		for range i { // one header, then two, then three, each a new address
			xff = append(xff, fmt.Sprintf("198.51.100.%d", len(xff)+10*i))
		}
		r := post("/api/auth/v1/sessions", fmt.Sprintf(`{"email":"who%d@example.com","password":"wrong password"}`, i), xff...)
		testkit.WantError(t, r, 401, "invalid_credentials")
	}
	r := post("/api/auth/v1/sessions", `{"email":"who9@example.com","password":"wrong password"}`, "198.51.100.200", "192.0.2.200")
	testkit.WantError(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// The storefront's own login goes through the same limit.
	r = post("/session", `{"email":"who9@example.com","password":"wrong password"}`, "198.51.100.201", "192.0.2.201")
	testkit.WantError(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("storefront login: 429 without Retry-After")
	}
}
