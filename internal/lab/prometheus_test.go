package lab

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/metrics"
	"shoplab/internal/proc"
	"shoplab/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// source is the repository's provisioning/prometheus, the one source both labs render.
func source(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "provisioning", "prometheus")
}

func TestRenderPrometheus(t *testing.T) {
	tmpl := []byte("interval: @SCRAPE_INTERVAL@\nserver: @CONSUL_ADDR@\nsd: @SD_URL@\nrules: @RULES_FILE@\n")
	ok := PrometheusParams{ScrapeInterval: 5 * time.Second, ConsulAddr: "127.0.0.1:8500", RulesFile: "/r.yml", SDURL: "http://127.0.0.1:1/targets"}
	tests := []struct {
		name    string
		tmpl    []byte
		p       PrometheusParams
		want    string // in the output, or in the error
		wantErr bool
	}{
		{"filled", tmpl, ok, "interval: 5s\nserver: 127.0.0.1:8500\nsd: http://127.0.0.1:1/targets\nrules: /r.yml\n", false},
		{"no Consul", tmpl, PrometheusParams{ScrapeInterval: time.Second, RulesFile: "/r", SDURL: "u"}, "Consul's address", true},
		{"no discovery", tmpl, PrometheusParams{ScrapeInterval: time.Second, RulesFile: "/r", ConsulAddr: "x:1"}, "discovery URL", true},
		{"interval too short", tmpl, PrometheusParams{ScrapeInterval: time.Millisecond, ConsulAddr: "x:1", RulesFile: "/r", SDURL: "u"}, "scrape interval", true},
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

// TestPrometheusFilesCheck: the rendered configuration and the rules pass promtool, as the labs use them.
func TestPrometheusFilesCheck(t *testing.T) {
	promtool := needPromtool(t)
	dir := t.TempDir()
	tmpl, err := os.ReadFile(filepath.Join(source(t), "prometheus.yml.in"))
	if err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(source(t), "rules.yml")
	conf, err := RenderPrometheus(tmpl, PrometheusParams{ScrapeInterval: 5 * time.Second, ConsulAddr: "127.0.0.1:8500", RulesFile: rules,
		SDURL: "http://127.0.0.1:9096/targets"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, conf)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
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
	// serves nothing, with its metrics on the operations port named in its meta.
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
	mesh := register("widget-mesh", 1, opsPort, map[string]string{"ops_port": strconv.Itoa(opsPort)})

	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPrometheus(context.Background(), PrometheusOptions{Binary: bin, Dir: t.TempDir(), Source: source(t), Port: port, Consul: consul.Client,
		LogPath: filepath.Join(t.TempDir(), "prometheus.log"), Params: PrometheusParams{ScrapeInterval: interval, ConsulAddr: consul.HTTPAddr}})
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
