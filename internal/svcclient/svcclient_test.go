package svcclient_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/mesh"
	"shoplab/internal/svcclient"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// TestFollowsTheCalleesPolicy: a call reaches a second instance only when the called service's registered
// retry policy names it (or the first never received it), as the front's gateway does. Two instances share
// one count: the first request either receives is read whole and its connection closed without an answer.
// Before, svcclient guessed from the method alone: a POST a service declared repeatable was never retried,
// so orders' reservation failed when it met a catalog instance that died with it.
func TestFollowsTheCalleesPolicy(t *testing.T) {
	consul := testkit.SharedConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := hclog.NewNullLogger()
	client := svcclient.New(ctx, consul.Client, mesh.Start(ctx, consul.Client, "caller", log), log, svcclient.Options{Timeout: 2 * time.Second})

	tests := []struct {
		name       string
		policy     consulx.RetryPolicy
		method     string
		path       string
		header     http.Header
		wantStatus int // 0: the call fails
		wantSeen   int64
	}{
		{"a POST the policy names", consulx.RetryPolicy{Methods: []string{"GET"}, Routes: []string{"POST /internal/v1/things/*/settle"}},
			"POST", "/internal/v1/things/t1/settle", nil, 200, 2},
		{"a POST it does not name", consulx.RetryPolicy{Methods: []string{"GET"}}, "POST", "/internal/v1/things/t1/settle", nil, 0, 1},
		{"a keyed POST with its key", consulx.RetryPolicy{Keyed: []string{"POST /v1/things"}}, "POST", "/v1/things?x=1",
			http.Header{"Idempotency-Key": {"k1"}}, 200, 2},
		{"a keyed POST without one", consulx.RetryPolicy{Keyed: []string{"POST /v1/things"}}, "POST", "/v1/things", nil, 0, 1},
		{"a PUT the policy does not name", consulx.RetryPolicy{Methods: []string{"GET"}}, "PUT", "/v1/things/t1", nil, 0, 1},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			service := fmt.Sprintf("policy-%d", i)
			var seen atomic.Int64
			for j := range 2 {
				addr := firstRequestDropped(t, &seen)
				host, port, _ := net.SplitHostPort(addr)
				p, _ := strconv.Atoi(port)
				reg := &api.AgentServiceRegistration{ID: fmt.Sprintf("%s-%d", service, j), Name: service, Address: host, Port: p, Meta: tc.policy.Meta()}
				if err := consul.Client.Agent().ServiceRegister(reg); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = consul.Client.Agent().ServiceDeregister(reg.ID) })
			}
			waitInstances(t, consul.Client, service, 2)
			resp, err := client.Do(ctx, service, svcclient.Request{Method: tc.method, Path: tc.path, Header: tc.header})
			status := 0
			if err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			if status != tc.wantStatus || seen.Load() != tc.wantSeen {
				t.Errorf("got status %d (%v), %d requests received; want %d, %d", status, err, seen.Load(), tc.wantStatus, tc.wantSeen)
			}
		})
	}
}

// firstRequestDropped serves HTTP on a loopback port until the test ends: the first request any server of seen
// receives is read whole and its connection closed unanswered (an instance that died with it); the others get 200.
func firstRequestDropped(t *testing.T, seen *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					req.Body.Close()
					if seen.Add(1) == 1 {
						return
					}
					if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// waitInstances waits (up to 10 s) until Consul reports n passing instances of service.
func waitInstances(t *testing.T, c *api.Client, service string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if entries, _, err := c.Health().Service(service, "", true, nil); err == nil && len(entries) == n {
			return
		}
	}
	t.Fatalf("%s: want %d passing instances within 10s", service, n)
}
