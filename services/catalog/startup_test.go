package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"shoplab/internal/consulx"
	"shoplab/lab/consulagent"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

// TestStartsWithoutConsul: started while its Consul agent is down, catalog runs and answers its health
// endpoints at once; its readiness names what is missing (the registration, a warning, and its mesh
// certificate, without which its mutual-TLS API cannot serve); as soon as the agent answers it gets its
// certificate and registers, passing, without a restart.
func TestStartsWithoutConsul(t *testing.T) {
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ports, err := proc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	ops := ports[1]
	env := map[string]string{"DATABASE_URL": testkit.NewDatabase(t), "CONSUL_HTTP_ADDR": addr, "SERVICE_ID": "catalog-late",
		"LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", ports[0]), "OPS_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", ops)}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testkit.LogBuffer{}
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	opsURL := fmt.Sprintf("http://127.0.0.1:%d", ops)
	var r testkit.Resp
	for deadline := time.Now().Add(30 * time.Second); ; {
		if r = tryGet(opsURL + "/health/ready"); r.Status != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	body := r.String()
	if r.Status != 503 || !strings.Contains(body, `"consul":{"status":"warn"`) || !strings.Contains(body, "not registered") ||
		!strings.Contains(body, `"mesh":{"status":"fail"`) {
		t.Fatalf("readiness without Consul: got %d %s; want 503 naming the missing registration (warn) and mesh certificate (fail)", r.Status, body)
	}

	time.Sleep(time.Second) // a few failed attempts
	bin, err := consulagent.Binary()
	testkit.Need(t, "consul", err, consulagent.InstallHint)
	agent, err := consulagent.StartDev(context.Background(), consulagent.Options{Binary: bin, HTTPPort: port, LogPath: t.TempDir() + "/consul.log"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Stop() })
	started := time.Now()
	client, err := consulx.NewClient(consulx.ClientConfig{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	st := &testkit.Stack{Consul: &testkit.Consul{Agent: agent, Client: client}}
	st.WaitPassing(t, "catalog", "catalog-late", 10*time.Second)
	t.Logf("passing in Consul %s after the agent answered", time.Since(started).Round(time.Millisecond))
	if r := tryGet(opsURL + "/health/ready"); r.Status != 200 || !strings.Contains(r.String(), `"consul":{"status":"pass"}`) {
		t.Fatalf("readiness once registered: got %d %s; want 200 with the consul check passing", r.Status, r.Body)
	}
	// And its API answers over mutual TLS.
	c := testkit.MeshClient(t, addr)
	resp, err := c.Get("https://" + env["LISTEN_ADDR"] + "/v1/products?limit=1")
	if err != nil {
		t.Fatalf("API once registered: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("API once registered: got %d; want 200", resp.StatusCode)
	}
}

// tryGet is a plain GET whose failure to connect is status 0.
func tryGet(url string) testkit.Resp {
	resp, err := http.Get(url)
	if err != nil {
		return testkit.Resp{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return testkit.Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}
