package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"shoplab/internal/consulagent"
	"shoplab/internal/consulx"
	"shoplab/internal/proc"
	"shoplab/internal/testkit"
)

// TestStartsWithoutConsul: started while its Consul agent is down, catalog serves at once, its readiness
// reports the missing registration (a warning, still 200), and it registers — passing — as soon as the agent
// answers.
func TestStartsWithoutConsul(t *testing.T) {
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	svc := testkit.Run(t, "catalog", run, map[string]string{"DATABASE_URL": testkit.NewDatabase(t), "CONSUL_HTTP_ADDR": addr, "SERVICE_ID": "catalog-late"})

	if r := testkit.Call(t, "GET", svc.URL+"/v1/products?limit=1", ""); r.Status != 200 {
		t.Fatalf("API without Consul: got %d %s; want 200", r.Status, r.Body)
	}
	r := testkit.Call(t, "GET", svc.URL+"/health/ready", "")
	if r.Status != 200 || !strings.Contains(r.String(), `"consul":{"status":"warn"`) || !strings.Contains(r.String(), "not registered") {
		t.Fatalf("readiness without Consul: got %d %s; want 200 with the consul check warning that it is not registered", r.Status, r.Body)
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
	if r := testkit.Call(t, "GET", svc.URL+"/health/ready", ""); !strings.Contains(r.String(), `"consul":{"status":"pass"}`) {
		t.Fatalf("readiness once registered: got %s; want the consul check passing", r.Body)
	}
}
