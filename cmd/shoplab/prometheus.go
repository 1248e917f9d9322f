package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/consulx"
	"shoplab/lab"
)

// runPrometheusConfig is "shoplab prometheus-config": renders provisioning/prometheus (the configuration
// template and its rules) into a directory, as the VM lab's monitor-1 runs it. make run renders the same files
// itself.
func runPrometheusConfig(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prometheus-config", flag.ContinueOnError)
	source := fs.String("source", "provisioning/prometheus", "the directory with prometheus.yml.in and rules.yml")
	out := fs.String("out", "", "where prometheus.yml and rules.yml are written (it must exist)")
	sd := fs.String("sd-url", "http://127.0.0.1:9096", "the discovery endpoint (shoplab prometheus-sd)")
	interval := fs.Duration("interval", 10*time.Second, "scrape and rule evaluation interval")
	timeout := fs.Duration("timeout", 0, "scrape timeout (default half the interval)")
	caFile := fs.String("ca-file", "", "the CA (PEM) Patroni's REST API certificates are verified against (default "+lab.SystemCAFile+")")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"prometheus-config: --out is required"}
	}
	if fi, err := os.Stat(*out); err != nil || !fi.IsDir() {
		return usageError{fmt.Sprintf("prometheus-config: --out %s: not a directory", *out)}
	}
	path, err := lab.WritePrometheusFiles(*source, *out, lab.PrometheusParams{ScrapeInterval: *interval, ScrapeTimeout: *timeout, SDURL: *sd, CAFile: *caFile})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, path)
	return nil
}

// runPrometheusSD is "shoplab prometheus-sd": serves the local Consul agent's catalog to Prometheus' HTTP service
// discovery (lab.Discovery) until SIGTERM, as the VM lab's monitor-1 runs it. The agent and the token come from
// CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE, as Consul's own tools read them; the token
// needs only to read services and nodes.
func runPrometheusSD(ctx context.Context, args []string, _ func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("prometheus-sd", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9096", "where Prometheus asks")
	nodePort := fs.Int("node-exporter-port", 0, "the port of the node exporter on every Consul node (0: none)")
	patroniPort := fs.Int("patroni-api-port", 0, "the port of Patroni's REST API on every member of a database cluster (0: none)")
	agentPort := fs.Int("consul-metrics-port", 0, "the port of shoplab consul-metrics on every Consul node (0: none)")
	agents := fs.String("consul-agents", "", "comma-separated host:port of Consul agents Prometheus scrapes directly (their own API)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	for name, port := range map[string]int{"--node-exporter-port": *nodePort, "--patroni-api-port": *patroniPort, "--consul-metrics-port": *agentPort} {
		if port < 0 || port > 65535 {
			return usageError{fmt.Sprintf("prometheus-sd: %s must be from 0 to 65535", name)}
		}
	}
	var direct []string
	for _, a := range strings.Split(*agents, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usageError{fmt.Sprintf("prometheus-sd: --consul-agents: %q is not host:port", a)}
		}
		direct = append(direct, a)
	}
	consul, err := consulx.NewClient(consulx.ClientConfig{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	return serveUntilSignal(ctx, "prometheus-sd", "Consul's catalog to Prometheus", *listen, stderr,
		lab.Discovery{Consul: consul, NodeExporterPort: *nodePort, PatroniAPIPort: *patroniPort,
			ConsulMetricsPort: *agentPort, ConsulAgents: direct}.Handler())
}

// runConsulMetrics is "shoplab consul-metrics": serves the local Consul agent's own metrics (its
// /v1/agent/metrics in Prometheus' format) at /v1/agent/metrics on --listen, as every VM of the lab runs it:
// an agent's HTTP API answers on its loopback only. Each request is one call to the agent, bounded at 5 s; an
// agent that does not answer makes it 502, so Prometheus shows the agent down. The agent and its token come from
// CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE; the token needs agent:read on its node.
func runConsulMetrics(ctx context.Context, args []string, _ func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("consul-metrics", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9107", "where Prometheus asks")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	h, err := newAgentMetrics()
	if err != nil {
		return err
	}
	return serveUntilSignal(ctx, "consul-metrics", "the local Consul agent's metrics", *listen, stderr, h)
}

// agentMetrics relays the local Consul agent's metrics.
type agentMetrics struct {
	url, token string
	client     *http.Client
}

// newAgentMetrics reads the agent's address, token and TLS settings as the Consul library does
// (api.DefaultConfig: CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN(_FILE), CONSUL_HTTP_SSL, CONSUL_CACERT, …). The
// library has no call for the agent's metrics in Prometheus' format, so the request is made here.
func newAgentMetrics() (*agentMetrics, error) {
	cfg := api.DefaultConfig()
	token := cfg.Token
	if token == "" && cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("consul-metrics: the token (CONSUL_HTTP_TOKEN_FILE): %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	client, err := api.NewHttpClient(cfg.Transport, cfg.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("consul-metrics: %w", err)
	}
	client.Timeout = 5 * time.Second
	scheme, addr := cfg.Scheme, cfg.Address
	if s, a, ok := strings.Cut(addr, "://"); ok { // CONSUL_HTTP_ADDR may carry the scheme, as the library allows
		scheme, addr = s, a
	}
	return &agentMetrics{url: scheme + "://" + strings.TrimRight(addr, "/") + "/v1/agent/metrics?format=prometheus",
		token: token, client: client}, nil
}

func (m *agentMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/agent/metrics" && r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, m.url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if m.token != "" {
		req.Header.Set("X-Consul-Token", m.token)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		http.Error(w, "consul agent: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, fmt.Sprintf("consul agent: %s", resp.Status), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 32<<20))
}

// serveUntilSignal listens on addr, says on stderr what the command serves there, and serves h until ctx
// ends or SIGTERM/SIGINT, then shuts down (at most 5 s).
func serveUntilSignal(ctx context.Context, command, what, addr string, stderr io.Writer, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", command, err)
	}
	fmt.Fprintf(stderr, "%s: serving %s on %s\n", command, what, ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
