package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

func TestCommandLine(t *testing.T) {
	env := func(string) string { return "" }
	tests := []struct {
		args  []string
		usage bool
		want  string
	}{
		{nil, true, "no command"},
		{[]string{"launch"}, true, `unknown command "launch"`},
		{[]string{"load", "--rate", "0"}, true, "--rate"},
		{[]string{"load", "--duration", "2h"}, true, "--duration"},
		{[]string{"load", "--users", "0"}, true, "--users"},
		{[]string{"smoke", "--nope"}, true, "flag provided but not defined"},
		{[]string{"smoke", "extra"}, true, "unexpected argument"},
		{[]string{"lab", "--port-offset", "-1"}, true, "--port-offset"},
		{[]string{"lab", "--replicas", "catalog=zero"}, true, "replicas"},
		{[]string{"bench", "--part", "everything"}, true, "--part"},
		{[]string{"bench", "--rounds", "0"}, true, "--rounds"},
		{[]string{"bench", "--duration", "1h"}, true, "--duration"},
		{[]string{"bench", "--shoppers", "4,lots"}, true, "--shoppers"},
		{[]string{"bench", "--checkout-duration", "0s"}, true, "--checkout-duration"},
		{[]string{"bench", "--compare-env", "NOEQUALS"}, true, "KEY=VALUE"},
		{[]string{"status", "--topology", "/nonexistent/topology.yml"}, true, "/nonexistent/topology.yml"},
		{[]string{"prometheus-config"}, true, "--out is required"},
		{[]string{"prometheus-config", "--out", "/nonexistent"}, true, "not a directory"},
		{[]string{"prometheus-sd", "--node-exporter-port", "70000"}, true, "--node-exporter-port"},
		{[]string{"prometheus-sd", "--consul-agents", "nowhere"}, true, "not host:port"},
		{[]string{"status", "--consul", "127.0.0.1:1"}, false, "is the lab running"},
		{[]string{"smoke", "--front", "http://127.0.0.1:1"}, false, "front answers its status page"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, env, &out, &errOut)
		var u usageError
		if err == nil || errors.As(err, &u) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("shoplab %v: got %v (usage error %v); want an error mentioning %q (usage error %v)", tc.args, err, errors.As(err, &u), tc.want, tc.usage)
		}
	}
}

// TestUsageListsCommands: every command but bench-proxy (started by bench) is in the usage text, and "help"
// prints it.
func TestUsageListsCommands(t *testing.T) {
	for name := range commands {
		if name != "bench-proxy" && !strings.Contains(usage, "\n  "+name+" ") {
			t.Errorf("usage: got no line for %q; want one", name)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &out, &out); err != nil || out.String() != usage+"\n" {
		t.Errorf("shoplab help: got %v and %q; want nil and the usage", err, out.String())
	}
}

// TestPrometheusConfigCommand: "shoplab prometheus-config", as monitor-1's provisioning runs it, writes the
// configuration (pointing at the discovery endpoint and the rules beside it) and prints its path.
func TestPrometheusConfigCommand(t *testing.T) {
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"prometheus-config", "--source", filepath.Join(root, "provisioning", "prometheus"), "--out", out,
		"--sd-url", "http://127.0.0.1:9096", "--interval", "10s", "--timeout", "5s"}
	if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("shoplab %v: %v\n%s", args, err, stderr.String())
	}
	path := filepath.Join(out, "prometheus.yml")
	if got := strings.TrimSpace(stdout.String()); got != path {
		t.Fatalf("printed %q; want %q", got, path)
	}
	conf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scrape_interval: 10s\n", "scrape_timeout: 5s\n", "- " + filepath.Join(out, "rules.yml") + "\n",
		"url: http://127.0.0.1:9096/services\n", "url: http://127.0.0.1:9096/patroni\n", "url: http://127.0.0.1:9096/nodes\n"} {
		if !strings.Contains(string(conf), want) {
			t.Fatalf("prometheus.yml: want %q in\n%s", want, conf)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "rules.yml")); err != nil {
		t.Fatalf("rules.yml beside it: %v", err)
	}
}

// TestConsulMetricsRelay: "shoplab consul-metrics" (every VM of the lab runs it) relays a real Consul agent's own
// metrics in Prometheus' format, with the token read from CONSUL_HTTP_TOKEN_FILE; anything else is 404, and an
// agent that does not answer makes it 502 (Prometheus then shows the agent down).
func TestConsulMetricsRelay(t *testing.T) {
	consul := testkit.NewConsul(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("a-token-a-dev-agent-ignores\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	relay := func(addr string) *httptest.Server {
		t.Setenv("CONSUL_HTTP_ADDR", addr)
		t.Setenv("CONSUL_HTTP_TOKEN_FILE", tokenFile)
		h, err := newAgentMetrics()
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv
	}
	up := relay(consul.HTTPAddr)
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down := relay("127.0.0.1:" + strconv.Itoa(port))
	tests := []struct {
		name, url string
		code      int
		want      string
	}{
		{"the agent's metrics, as Prometheus asks", up.URL + "/v1/agent/metrics?format=prometheus", http.StatusOK, "\n# TYPE consul_"},
		{"another path", up.URL + "/v1/kv/secret", http.StatusNotFound, "not found"},
		{"the agent gone", down.URL + "/v1/agent/metrics?format=prometheus", http.StatusBadGateway, "consul agent: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
				t.Fatalf("GET %s: got %d %.200q; want %d with %q", tc.url, resp.StatusCode, b, tc.code, tc.want)
			}
		})
	}
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "/nonexistent/token")
	if _, err := newAgentMetrics(); err == nil || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN_FILE") {
		t.Fatalf("a missing token file: got %v; want an error naming CONSUL_HTTP_TOKEN_FILE", err)
	}
}
