package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/proc"
)

// PrometheusPort is where make run's Prometheus listens (plus the port offset): not 9090, which Debian's own
// prometheus service takes once the package is installed.
const PrometheusPort = 9095

// PrometheusParams fills the placeholders of provisioning/prometheus/prometheus.yml.in.
type PrometheusParams struct {
	ScrapeInterval time.Duration // how often every target is scraped and the rules evaluated
	ConsulAddr     string        // the local Consul agent, host:port
	RulesFile      string        // where rules.yml is
	SDURL          string        // the discovery endpoint (ConsulTargets)
}

// RenderPrometheus fills the template (prometheus.yml.in) with p: the one configuration both labs render.
func RenderPrometheus(template []byte, p PrometheusParams) ([]byte, error) {
	if p.ScrapeInterval < time.Second || p.ConsulAddr == "" || p.RulesFile == "" || p.SDURL == "" {
		return nil, fmt.Errorf("prometheus config: a scrape interval of at least 1s, Consul's address, the rules file and the discovery URL are required")
	}
	out := strings.NewReplacer(
		"@SCRAPE_INTERVAL@", p.ScrapeInterval.String(),
		"@CONSUL_ADDR@", p.ConsulAddr,
		"@RULES_FILE@", p.RulesFile,
		"@SD_URL@", p.SDURL,
	).Replace(string(template))
	if left := placeholder.FindString(out); left != "" {
		return nil, fmt.Errorf("prometheus config: the template has a placeholder this shoplab does not know: %s", left)
	}
	return []byte(out), nil
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// Prometheus is a Prometheus server run as a child process, with the discovery endpoint it reads Consul's
// catalog from.
type Prometheus struct {
	URL  string
	proc *proc.Process
	sd   *http.Server
}

// PrometheusOptions says how to run one.
type PrometheusOptions struct {
	Binary  string // the prometheus binary
	Dir     string // where its configuration, rules and data go
	Source  string // the directory holding prometheus.yml.in and rules.yml
	Port    int
	Params  PrometheusParams // RulesFile and SDURL are filled in
	Consul  *api.Client      // the catalog the discovery endpoint serves
	LogPath string
}

// StartPrometheus serves Consul's catalog as Prometheus' discovery endpoint on a free loopback port, renders
// the configuration into Dir, starts Prometheus on 127.0.0.1:Port and waits (at most 30 s) until it is ready.
func StartPrometheus(ctx context.Context, o PrometheusOptions) (_ *Prometheus, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	pr := &Prometheus{sd: &http.Server{Handler: ConsulTargets(o.Consul), ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = pr.sd.Serve(ln) }()
	defer func() {
		if err != nil {
			_ = pr.Stop()
		}
	}()
	o.Params.SDURL = "http://" + ln.Addr().String() + "/targets"

	tmpl, err := os.ReadFile(filepath.Join(o.Source, "prometheus.yml.in"))
	if err != nil {
		return nil, err
	}
	rules, err := os.ReadFile(filepath.Join(o.Source, "rules.yml"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	o.Params.RulesFile = filepath.Join(o.Dir, "rules.yml")
	conf, err := RenderPrometheus(tmpl, o.Params)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(o.Params.RulesFile, rules, 0o600); err != nil {
		return nil, err
	}
	confPath := filepath.Join(o.Dir, "prometheus.yml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", o.Port)
	p, err := proc.Start(proc.Spec{Name: "prometheus", Path: o.Binary, LogPath: o.LogPath, ParentDeath: syscall.SIGTERM,
		Args: []string{"--config.file=" + confPath, "--storage.tsdb.path=" + filepath.Join(o.Dir, "data"),
			"--storage.tsdb.retention.time=2d", "--web.listen-address=" + addr, "--log.level=warn"}})
	if err != nil {
		return nil, err
	}
	pr.URL, pr.proc = "http://"+addr, p
	client := &http.Client{Timeout: time.Second}
	err = proc.WaitFor(p, 30*time.Second, 100*time.Millisecond, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pr.URL+"/-/ready", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("not ready yet")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w (log: %s)", err, o.LogPath)
	}
	return pr, nil
}

// PID is Prometheus' process id.
func (p *Prometheus) PID() int { return p.proc.PID() }

// Stop stops Prometheus (SIGTERM, then kill after 10 s) and its discovery endpoint.
func (p *Prometheus) Stop() error {
	var err error
	if p.proc != nil {
		err = p.proc.Stop(syscall.SIGTERM, 10*time.Second)
	}
	return errors.Join(err, p.sd.Close())
}

// sdGroup is one target group of Prometheus' HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// ConsulTargets serves Consul's catalog in the format of Prometheus' http_sd_configs: every instance of every
// service (passing or not) at the address its /metrics answers on — the operations port a Connect-native
// instance registers as meta "ops_port", else its service port — labelled with its service, instance id and
// node. Consul's own "consul" service is left out (the configuration scrapes the agent apart).
func ConsulTargets(client *api.Client) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		q := (&api.QueryOptions{}).WithContext(ctx)
		services, _, err := client.Catalog().Services(q)
		if err != nil {
			sdError(w, err)
			return
		}
		groups := []sdGroup{}
		names := make([]string, 0, len(services))
		for name := range services {
			if name != "consul" {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			entries, _, err := client.Catalog().Service(name, "", q)
			if err != nil {
				sdError(w, err)
				return
			}
			for _, e := range entries {
				addr, port := e.ServiceAddress, e.ServicePort
				if addr == "" {
					addr = e.Address
				}
				if ops, err := strconv.Atoi(e.ServiceMeta["ops_port"]); err == nil && ops > 0 {
					port = ops
				}
				groups = append(groups, sdGroup{Targets: []string{net.JoinHostPort(addr, strconv.Itoa(port))},
					Labels: map[string]string{"service": name, "instance": e.ServiceID, "node": e.Node}})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(groups)
	})
}

// prometheusBinary finds prometheus on PATH ("" when it is not installed).
func prometheusBinary() string {
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return ""
	}
	return p
}

// sdError answers 502 with the error body when Consul did not answer; Prometheus keeps the targets it had.
func sdError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "consul: " + err.Error()})
}
