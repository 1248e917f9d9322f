package lab

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/metrics"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// source is the repository's provisioning/prometheus, the one source both labs render.
func source(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "provisioning", "prometheus")
}

func TestRenderPrometheus(t *testing.T) {
	tmpl := []byte("interval: @SCRAPE_INTERVAL@\ntimeout: @SCRAPE_TIMEOUT@\nsd: @SD_URL@/services\nrules: @RULES_FILE@\n")
	ok := PrometheusParams{ScrapeInterval: 5 * time.Second, ScrapeTimeout: 2 * time.Second, RulesFile: "/r.yml", SDURL: "http://127.0.0.1:1/"}
	tests := []struct {
		name    string
		tmpl    []byte
		p       PrometheusParams
		want    string // in the output, or in the error
		wantErr bool
	}{
		{"filled", tmpl, ok, "interval: 5s\ntimeout: 2s\nsd: http://127.0.0.1:1/services\nrules: /r.yml\n", false},
		{"timeout by default half the interval", tmpl, PrometheusParams{ScrapeInterval: 10 * time.Second, RulesFile: "/r", SDURL: "u"}, "timeout: 5s\n", false},
		{"durations as Prometheus reads them", tmpl, PrometheusParams{ScrapeInterval: 5 * time.Second, RulesFile: "/r", SDURL: "u"}, "interval: 5s\ntimeout: 2500ms\n", false},
		{"no discovery", tmpl, PrometheusParams{ScrapeInterval: time.Second, RulesFile: "/r"}, "discovery URL", true},
		{"no rules", tmpl, PrometheusParams{ScrapeInterval: time.Second, SDURL: "u"}, "rules file", true},
		{"interval too short", tmpl, PrometheusParams{ScrapeInterval: time.Millisecond, RulesFile: "/r", SDURL: "u"}, "scrape interval", true},
		{"timeout over the interval", tmpl, PrometheusParams{ScrapeInterval: time.Second, ScrapeTimeout: 2 * time.Second, RulesFile: "/r", SDURL: "u"}, "scrape timeout", true},
		{"unknown placeholder", append(tmpl, "x: @NOPE@\n"...), ok, "@NOPE@", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := RenderPrometheus(tc.tmpl, tc.p)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v; want an error mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %q, %v; want it to contain %q", out, err, tc.want)
			}
		})
	}
}

func needPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testkit.Need(t, "promtool", err, "sudo apt-get install --no-install-recommends prometheus")
	}
	return p
}

// TestPrometheusFilesCheck: the configuration as each lab renders it passes promtool, and so do the rules and
// their unit tests (rules_test.yml: when each alert fires, what each recording rule computes).
func TestPrometheusFilesCheck(t *testing.T) {
	promtool := needPromtool(t)
	for _, c := range []struct {
		name string
		p    PrometheusParams
	}{
		{"make run", PrometheusParams{ScrapeInterval: 5 * time.Second, ScrapeTimeout: 2 * time.Second, SDURL: "http://127.0.0.1:40000"}},
		{"VM lab (monitor-1)", PrometheusParams{ScrapeInterval: 30 * time.Second, ScrapeTimeout: 10 * time.Second, SDURL: "http://127.0.0.1:9096"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, err := WritePrometheusFiles(source(t), t.TempDir(), c.p)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
				conf, _ := os.ReadFile(path)
				t.Fatalf("promtool check config: %v\n%s\n%s", err, out, conf)
			}
		})
	}
	if out, err := exec.Command(promtool, "check", "rules", filepath.Join(source(t), "rules.yml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	cmd := exec.Command(promtool, "test", "rules", "rules_test.yml")
	cmd.Dir = source(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules rules_test.yml: %v\n%s", err, out)
	}
}

// TestPrometheusFollowsConsul: a real Prometheus on the lab's configuration, against a real Consul agent,
// scrapes the instances registered there (a mesh one on its operations port), and drops one that deregisters
// within two scrape intervals.
func TestPrometheusFollowsConsul(t *testing.T) {
	needPromtool(t)
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testkit.Need(t, "prometheus", err, "sudo apt-get install --no-install-recommends prometheus")
	}
	consul := testkit.NewConsul(t)
	const interval = 5 * time.Second

	// Two instances with real /metrics: "plain" on its registered port, "mesh" registered on a port that
	// serves nothing, with its health and metrics on an operations port (its meta metrics_port).
	serve := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: metrics.New().Handler()}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	plainPort, opsPort := serve(), serve()
	register := func(id string, port, checkPort int, meta map[string]string) *consulx.Registrar {
		r, err := consulx.Register(context.Background(), consul.Client, consulx.Registration{Name: "widget", ID: id, Address: "127.0.0.1",
			Port: port, Meta: meta, CheckPort: checkPort, CheckPath: "/metrics", InitialPassing: true}, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	register("widget-plain", plainPort, plainPort, nil)
	mesh := register("widget-mesh", 1, opsPort, nil)

	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPrometheus(context.Background(), PrometheusOptions{Binary: bin, Dir: t.TempDir(), Source: source(t), Port: port, Consul: consul.Client,
		ConsulAddr: consul.HTTPAddr, LogPath: filepath.Join(t.TempDir(), "prometheus.log"), Params: PrometheusParams{ScrapeInterval: interval}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })

	deadline := time.Now().Add(6 * interval)
	for {
		got := targets(t, p.URL)
		if got["widget-plain"] == "up" && got["widget-mesh"] == "up" && got["consul"] == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets: got %v; want widget-plain, widget-mesh and consul up within %s", got, 6*interval)
		}
		time.Sleep(250 * time.Millisecond)
	}

	if err := mesh.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	for {
		got := targets(t, p.URL)
		if _, ok := got["widget-mesh"]; !ok {
			if got["widget-plain"] != "up" {
				t.Fatalf("targets after the deregistration: got %v; want widget-plain still up", got)
			}
			t.Logf("widget-mesh left Prometheus' targets %s after it deregistered (scrape interval %s)", time.Since(gone).Round(100*time.Millisecond), interval)
			return
		}
		if time.Since(gone) > 2*interval {
			t.Fatalf("widget-mesh still a target %s after it deregistered; want it gone within 2 scrape intervals", time.Since(gone).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// targets returns Prometheus' active targets: instance label → health ("up", "down", "unknown").
func targets(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/targets?state=active")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range body.Data.ActiveTargets {
		name := a.Labels["instance"]
		if a.Labels["job"] == "consul" {
			name = "consul"
		}
		out[name] = a.Health
	}
	return out
}

// TestDiscovery: each path of the discovery endpoint against a real Consul agent — a shoplab instance at its
// metrics port (and a registration without one left out), a Patroni member at its address and Patroni's API
// port, every node at the node exporter's port, the Consul agents given and every node at the agent metrics
// relay's port — and a 502 with the error body when Consul does not answer.
func TestDiscovery(t *testing.T) {
	consul := testkit.NewConsul(t)
	ctx := context.Background()
	if _, err := consulx.Register(ctx, consul.Client, consulx.Registration{Name: "widget", ID: "widget-1", Address: "127.0.0.1",
		Port: 7001, CheckPort: 8001, InitialPassing: true}, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	agent := consul.Client.Agent()
	// As Patroni registers a member: its PostgreSQL's address, its role as a tag, an HTTP check on its API.
	if err := agent.ServiceRegister(&api.AgentServiceRegistration{ID: "things-db/n1", Name: "things-db", Address: "127.0.0.2", Port: 5432,
		Tags: []string{PatroniTag, "primary"}, Check: &api.AgentServiceCheck{HTTP: "http://127.0.0.2:8008/primary", Interval: "10s"}}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ServiceRegister(&api.AgentServiceRegistration{ID: "other-1", Name: "other", Address: "127.0.0.3", Port: 7003}); err != nil {
		t.Fatal(err)
	}
	node, err := agent.NodeName()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Discovery{Consul: consul.Client, NodeExporterPort: 9100, PatroniAPIPort: 8008, ConsulMetricsPort: 9107,
		ConsulAgents: []string{consul.HTTPAddr}}.Handler())
	defer srv.Close()

	tests := []struct {
		path string
		want string
	}{
		{"/services", `[{"targets":["127.0.0.1:8001"],"labels":{"instance":"widget-1","node":"` + node + `","service":"widget"}}]`},
		{"/patroni", `[{"targets":["127.0.0.2:8008"],"labels":{"instance":"things-db/n1","node":"` + node + `","service":"things-db"}}]`},
		{"/nodes", `[{"targets":["127.0.0.1:9100"],"labels":{"instance":"` + node + `","node":"` + node + `"}}]`},
		{"/consul", `[{"targets":["` + consul.HTTPAddr + `"],"labels":{"service":"consul"}},` +
			`{"targets":["127.0.0.1:9107"],"labels":{"instance":"` + node + `","node":"` + node + `"}}]`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, body := get(t, srv.URL+tc.path)
			if code != http.StatusOK || body != tc.want {
				t.Fatalf("GET %s: got %d %s; want 200 %s", tc.path, code, body, tc.want)
			}
		})
	}
	// A service that registers after the first answer is in the next one (the agent's cache once kept the list
	// it first gave).
	if _, err := consulx.Register(ctx, consul.Client, consulx.Registration{Name: "late", ID: "late-1", Address: "127.0.0.1",
		Port: 7002, CheckPort: 8002, InitialPassing: true}, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, srv.URL+"/services"); code != http.StatusOK || !strings.Contains(body, `"127.0.0.1:8002"`) {
		t.Fatalf("GET /services after late-1 registered: got %d %s; want 200 with 127.0.0.1:8002", code, body)
	}
	none := httptest.NewServer(Discovery{Consul: consul.Client}.Handler())
	defer none.Close()
	for _, path := range []string{"/nodes", "/patroni", "/consul"} {
		if code, body := get(t, none.URL+path); code != http.StatusOK || body != "[]" {
			t.Fatalf("GET %s without ports or agents to give: got %d %s; want 200 []", path, code, body)
		}
	}

	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	gone, err := consulx.NewClient(consulx.ClientConfig{Address: "127.0.0.1:" + strconv.Itoa(port), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(Discovery{Consul: gone}.Handler())
	defer down.Close()
	if code, body := get(t, down.URL+"/services"); code != http.StatusBadGateway || !strings.Contains(body, `"code":"consul_unavailable","message":"consul: `) {
		t.Fatalf("GET /services with Consul gone: got %d %s; want 502 with the error body", code, body)
	}
}

// get returns the status and the trimmed body of a GET.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}
