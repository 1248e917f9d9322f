package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/lab/proc"
)

// PrometheusPort is where make run's Prometheus listens (plus the port offset): not 9090, which Debian's own
// prometheus service takes once the package is installed.
const PrometheusPort = 9095

// PrometheusParams fills the placeholders of provisioning/prometheus/prometheus.yml.in.
type PrometheusParams struct {
	ScrapeInterval time.Duration // how often every target is scraped and the rules evaluated
	ScrapeTimeout  time.Duration // how long one scrape may take (0: half the interval); at most the interval
	RulesFile      string        // where rules.yml is
	SDURL          string        // the discovery endpoint's base URL (Discovery): one path per scrape job
	// CAFile is the PEM file Patroni's REST API certificates are verified against: the VM lab's own CA
	// (default SystemCAFile: make run has no Patroni).
	CAFile string
}

// SystemCAFile is Debian's bundle of the system's trusted CAs (ca-certificates).
const SystemCAFile = "/etc/ssl/certs/ca-certificates.crt"

// RenderPrometheus fills the template (prometheus.yml.in) with p: the one configuration both labs render (make
// run here, the VM lab with `shoplab prometheus-config` on its monitor VM).
func RenderPrometheus(template []byte, p PrometheusParams) ([]byte, error) {
	if p.ScrapeTimeout == 0 {
		p.ScrapeTimeout = p.ScrapeInterval / 2
	}
	if p.CAFile == "" {
		p.CAFile = SystemCAFile
	}
	if p.ScrapeInterval < time.Second || p.ScrapeTimeout < 500*time.Millisecond || p.ScrapeTimeout > p.ScrapeInterval ||
		p.RulesFile == "" || p.SDURL == "" {
		return nil, fmt.Errorf("prometheus config: a scrape interval of at least 1s, a scrape timeout from 500ms to the interval, the rules file and the discovery URL are required")
	}
	out := strings.NewReplacer(
		"@SCRAPE_INTERVAL@", promDuration(p.ScrapeInterval),
		"@SCRAPE_TIMEOUT@", promDuration(p.ScrapeTimeout),
		"@RULES_FILE@", p.RulesFile,
		"@SD_URL@", strings.TrimRight(p.SDURL, "/"),
		"@CA_FILE@", p.CAFile,
	).Replace(string(template))
	if left := placeholder.FindString(out); left != "" {
		return nil, fmt.Errorf("prometheus config: the template has a placeholder this shoplab does not know: %s", left)
	}
	return []byte(out), nil
}

// WritePrometheusFiles renders source's prometheus.yml.in into dir/prometheus.yml, its rules pointing at a copy
// of source's rules.yml in dir, and returns the configuration's path.
func WritePrometheusFiles(source, dir string, p PrometheusParams) (string, error) {
	tmpl, err := os.ReadFile(filepath.Join(source, "prometheus.yml.in"))
	if err != nil {
		return "", err
	}
	rules, err := os.ReadFile(filepath.Join(source, "rules.yml"))
	if err != nil {
		return "", err
	}
	p.RulesFile = filepath.Join(dir, "rules.yml")
	conf, err := RenderPrometheus(tmpl, p)
	if err != nil {
		return "", err
	}
	// Neither file holds a secret: readable by the Prometheus user, whoever renders them.
	if err := os.WriteFile(p.RulesFile, rules, 0o644); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

var placeholder = regexp.MustCompile(`@[A-Z_]+@`)

// promDuration writes d as Prometheus reads durations: whole seconds, else whole milliseconds ("2.5s" is refused).
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// Prometheus is a Prometheus server run as a child process, with the discovery endpoint it reads Consul's
// catalog from.
type Prometheus struct {
	URL  string
	proc *proc.Process
	sd   *http.Server
}

// PrometheusOptions says how to run one.
type PrometheusOptions struct {
	Binary     string // the prometheus binary
	Dir        string // where its configuration, rules and data go
	Source     string // the directory holding prometheus.yml.in and rules.yml
	Port       int
	Params     PrometheusParams // RulesFile and SDURL are filled in
	Consul     *api.Client      // the catalog the discovery endpoint serves
	ConsulAddr string           // the local Consul agent (host:port), whose own metrics are scraped
	LogPath    string
}

// StartPrometheus serves Consul's catalog as Prometheus' discovery endpoint on a free loopback port, renders
// the configuration into Dir, starts Prometheus on 127.0.0.1:Port and waits (at most 30 s) until it is ready.
func StartPrometheus(ctx context.Context, o PrometheusOptions) (_ *Prometheus, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := Discovery{Consul: o.Consul, ConsulAgents: []string{o.ConsulAddr}}
	pr := &Prometheus{sd: &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = pr.sd.Serve(ln) }()
	defer func() {
		if err != nil {
			_ = pr.Stop()
		}
	}()
	o.Params.SDURL = "http://" + ln.Addr().String()
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o700); err != nil {
		return nil, err
	}
	confPath, err := WritePrometheusFiles(o.Source, o.Dir, o.Params)
	if err != nil {
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

// prometheusBinary finds prometheus on PATH ("" when it is not installed).
func prometheusBinary() string {
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return ""
	}
	return p
}
