// Package lab runs the whole shop on one machine as local processes: a Consul dev agent, a PostgreSQL cluster
// under the lab's state directory with one database and one role per service, and every service instance of
// the topology, supervised (a crashed instance is restarted). It is what `make run` starts.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"shoplab/internal/app"
	"shoplab/internal/consulx"
	"shoplab/internal/topology"
	"shoplab/lab/consulagent"
	"shoplab/lab/pgcluster"
	"shoplab/lab/proc"
)

// Default ports on 127.0.0.1; Config.PortOffset shifts all of them.
const (
	ConsulPort   = 8500
	PostgresPort = 5499 // not 5432, so a system PostgreSQL does not collide
	// OpsPortStep puts an instance's operations listener (health, metrics: never on the API's port) at its
	// port + 1000: catalog-1 at 9082.
	OpsPortStep = 1000
)

// Config describes a lab.
type Config struct {
	State      string // state directory (git-ignored .lab/): postgres/, logs/, secrets/
	Bin        string // directory holding the service binaries (make build)
	Consul     string // consul binary; "" finds it (consulagent.Binary)
	Topology   *topology.Topology
	PortOffset int
	Out        io.Writer // what the user reads
	LogLevel   string    // services' LOG_LEVEL (default info)
	Env        []string  // more environment for every service, over its own (e.g. AUTH_LIMIT_ADDRESS=…)
	// PrometheusSource is the directory of prometheus.yml.in and rules.yml (provisioning/prometheus): when
	// set and a prometheus binary is on PATH, the lab runs Prometheus with them. "" runs none.
	PrometheusSource string
}

// Lab is a running lab.
type Lab struct {
	cfg      Config
	consul   *consulagent.Agent
	pg       *pgcluster.Cluster
	prom     *Prometheus
	lock     *os.File
	started  time.Time
	ready    time.Duration
	stopping chan struct{}

	mu        sync.Mutex
	instances []*instance
	wg        sync.WaitGroup
}

type instance struct {
	topology.Instance
	port     int
	opsPort  int // plain /health and /metrics of a mesh service
	env      []string
	logPath  string
	proc     *proc.Process
	restarts []time.Time
}

// Instance describes a running instance for status files and tests.
type Instance struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Port    int    `json:"port"`
	PID     int    `json:"pid"`
	Log     string `json:"log"`
}

func (c Config) consulAddr() string { return fmt.Sprintf("127.0.0.1:%d", ConsulPort+c.PortOffset) }

// FrontURL is the storefront's address.
func (c Config) FrontURL() string {
	front, _ := c.Topology.Service(topology.Entry)
	return fmt.Sprintf("http://127.0.0.1:%d", front.Port+c.PortOffset)
}

// ConsulUIURL is the Consul UI's address.
func (c Config) ConsulUIURL() string { return "http://" + c.consulAddr() + "/ui" }

// Start checks everything it needs, starts Consul, PostgreSQL and every instance, and waits (at most 60 s)
// until every instance is passing in Consul. On any failure it stops what it started and says why.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	l := &Lab{cfg: cfg, started: time.Now(), stopping: make(chan struct{})}
	if err := l.start(ctx); err != nil {
		_ = l.Stop()
		return nil, err
	}
	return l, nil
}

func (l *Lab) start(ctx context.Context) (err error) {
	cfg := &l.cfg
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if err := l.preflight(); err != nil {
		return err
	}
	if err := l.lockState(); err != nil {
		return err
	}
	l.say("starting Consul on %s", cfg.consulAddr())
	l.consul, err = consulagent.StartDev(ctx, consulagent.Options{
		Binary: cfg.Consul, HTTPPort: ConsulPort + cfg.PortOffset, Node: "shoplab", LogPath: filepath.Join(cfg.State, "logs", "consul.log"), LogLevel: "info",
	})
	if err != nil {
		return fmt.Errorf("consul: %w (log: %s)", err, filepath.Join(cfg.State, "logs", "consul.log"))
	}
	// The mesh's intentions, as the topology declares them: every call denied but those it lists.
	consul, err := consulx.NewClient(consulx.ClientConfig{Address: cfg.consulAddr()})
	if err != nil {
		return err
	}
	if err := consulx.ApplyIntentions(ctx, consul, cfg.Topology.Calls()); err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	l.say("service mesh: intentions written (default deny; the calls of %s allowed)", "provisioning/topology.yml")
	l.say("starting PostgreSQL on 127.0.0.1:%d (data in %s)", PostgresPort+cfg.PortOffset, filepath.Join(cfg.State, "postgres"))
	l.pg, err = pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(cfg.State, "postgres"), Port: PostgresPort + cfg.PortOffset})
	if err != nil {
		return fmt.Errorf("postgres: %w (log: %s)", err, filepath.Join(cfg.State, "postgres", "postgres.log"))
	}
	dsns, err := l.databases(ctx)
	if err != nil {
		return err
	}
	// The services' secret keys, one file each in secrets/, made once: every instance of a service gets the same.
	keys := map[string]string{ // each service's own secret, by the variable it reads
		"auth":     "AUTH_KEY_ENCRYPTION_KEY",
		"orders":   "ORDERS_FINGERPRINT_KEY",
		"payments": "PAYMENTS_FINGERPRINT_KEY",
	}
	keyFiles := map[string]string{}
	for service, name := range keys {
		if keyFiles[service], err = l.keyFile(service, name); err != nil {
			return err
		}
	}
	for _, in := range cfg.Topology.Instances() {
		i := &instance{Instance: in, port: in.LocalPort() + cfg.PortOffset, opsPort: in.LocalPort() + OpsPortStep + cfg.PortOffset,
			logPath: filepath.Join(cfg.State, "logs", in.ID()+".log")}
		i.env = append(ServiceEnv(os.Environ(), in.Service.Name),
			"LISTEN_ADDR=127.0.0.1:"+strconv.Itoa(i.port),
			"OPS_LISTEN_ADDR=127.0.0.1:"+strconv.Itoa(i.opsPort),
			"SERVICE_ID="+in.ID(),
			"CONSUL_HTTP_ADDR="+cfg.consulAddr(),
			"DATABASE_URL="+dsns[in.Service.Name],
			"LOG_LEVEL="+cfg.LogLevel,
		)
		if name, ok := keys[in.Service.Name]; ok {
			i.env = append(i.env, name+"_FILE="+keyFiles[in.Service.Name])
		}
		i.env = append(i.env, cfg.Env...)
		if err := l.startInstance(i); err != nil {
			return err
		}
		l.mu.Lock()
		l.instances = append(l.instances, i)
		l.mu.Unlock()
	}
	if err := l.waitPassing(ctx, 60*time.Second); err != nil {
		return err
	}
	l.ready = time.Since(l.started)
	if err := l.startPrometheus(ctx); err != nil {
		return err
	}
	if err := l.writeState(); err != nil {
		return err
	}
	for _, i := range l.instances {
		l.supervise(i)
	}
	return nil
}

func (l *Lab) say(format string, args ...any) { fmt.Fprintf(l.cfg.Out, "lab: "+format+"\n", args...) }

// preflight fails fast, with what to do, when a binary is missing or a port is taken.
func (l *Lab) preflight() error {
	if l.cfg.Consul == "" {
		b, err := consulagent.Binary()
		if err != nil {
			return err
		}
		l.cfg.Consul = b
	}
	if _, err := pgcluster.BinDir(); err != nil {
		return err
	}
	for _, s := range l.cfg.Topology.Services {
		p := filepath.Join(l.cfg.Bin, s.Name)
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("the %s binary is missing (%s); build the services with: make build", s.Name, p)
		}
	}
	ports := map[int]string{ConsulPort + l.cfg.PortOffset: "Consul", PostgresPort + l.cfg.PortOffset: "PostgreSQL"}
	for _, in := range l.cfg.Topology.Instances() {
		ports[in.LocalPort()+l.cfg.PortOffset] = in.ID()
		ports[in.LocalPort()+OpsPortStep+l.cfg.PortOffset] = in.ID() + " (operations)"
	}
	for p, who := range ports {
		if !proc.PortFree(fmt.Sprintf("127.0.0.1:%d", p)) {
			return fmt.Errorf("port 127.0.0.1:%d (for %s) is taken; stop what uses it (another lab? check with: ss -ltnp 'sport = :%d')", p, who, p)
		}
	}
	// The state directory is traversable but not listable (0711): when the lab runs as root, PostgreSQL runs as
	// the postgres user and must reach its data directory inside; logs and secrets stay private (0700).
	if err := os.MkdirAll(l.cfg.State, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(l.cfg.State, 0o711); err != nil {
		return err
	}
	for _, d := range []string{"logs", "secrets"} {
		if err := os.MkdirAll(filepath.Join(l.cfg.State, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// lockState makes sure one lab at a time uses the state directory.
func (l *Lab) lockState() error {
	f, err := os.OpenFile(filepath.Join(l.cfg.State, "lab.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("another lab is running with the state directory %s; stop it first (Ctrl-C in its terminal)", l.cfg.State)
	}
	l.lock = f
	return nil
}

// databases makes one database and one role per service that has a database; the role's password is made
// once and kept in secrets/, so a second run reuses the data.
func (l *Lab) databases(ctx context.Context) (map[string]string, error) {
	dsns := map[string]string{}
	for _, s := range l.cfg.Topology.Services {
		if !s.Database {
			continue
		}
		pw, err := secret(filepath.Join(l.cfg.State, "secrets", "postgres-"+s.Name+".password"))
		if err != nil {
			return nil, err
		}
		dsn, err := l.pg.EnsureDatabase(ctx, s.Name, s.Name, pw)
		if err != nil {
			return nil, fmt.Errorf("database for %s: %w", s.Name, err)
		}
		dsns[s.Name] = dsn
	}
	return dsns, nil
}

// keyPath is the file of a service's secret key: auth's key-encryption key (it seals its signing keys), orders'
// and payments' fingerprint keys (for their Idempotency-Keys).
func keyPath(state, service string) string {
	if service == "auth" {
		return filepath.Join(state, "secrets", "auth-key-encryption.key")
	}
	return filepath.Join(state, "secrets", service+"-fingerprint.key")
}

// keyFile makes the secret key named name (its environment variable) of service once and returns the file's
// path: every instance of the service gets it. It is made, or checked, as the service itself reads it
// (app.LoadKey: 32 random bytes, base64, mode 0600), before any instance starts — replicas starting together
// would race to create it.
func (l *Lab) keyFile(service, name string) (string, error) {
	path := keyPath(l.cfg.State, service)
	_, err := app.LoadKey(func(k string) string {
		if k == name+"_FILE" {
			return path
		}
		return ""
	}, name, 32)
	return path, err
}

// secret returns the content of path, creating it (mode 0600) with a random value on first use.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := base64.RawURLEncoding.EncodeToString(b)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		return "", fmt.Errorf("write secret: %w", err)
	}
	return s, nil
}

func (l *Lab) startInstance(i *instance) error {
	p, err := proc.Start(proc.Spec{Name: i.ID(), Path: filepath.Join(l.cfg.Bin, i.Service.Name), Env: i.env, LogPath: i.logPath})
	if err != nil {
		return err
	}
	l.mu.Lock()
	i.proc = p
	l.mu.Unlock()
	// Fail fast if it dies while starting. A mesh service answers /health/live on its operations port, the
	// front on its own.
	client := &http.Client{Timeout: time.Second}
	return proc.WaitFor(p, 30*time.Second, 20*time.Millisecond, func() error {
		var err error
		for _, port := range []int{i.opsPort, i.port} {
			var resp *http.Response
			if resp, err = client.Get(fmt.Sprintf("http://127.0.0.1:%d/health/live", port)); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("/health/live on %d: %s", port, resp.Status)
			}
		}
		return err
	})
}

// waitPassing waits until every instance is passing in Consul.
func (l *Lab) waitPassing(ctx context.Context, within time.Duration) error {
	client, err := consulx.NewClient(consulx.ClientConfig{Address: l.cfg.consulAddr()})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		missing := ""
		for _, i := range l.instances {
			entries, _, err := client.Health().Service(i.Service.Name, "", true, nil)
			found := false
			for _, e := range entries {
				found = found || e.Service.ID == i.ID()
			}
			if err != nil || !found {
				missing = i.ID()
				break
			}
			if done, perr := i.proc.Exited(); done {
				return fmt.Errorf("%s exited while starting (%v); last log lines:\n%s", i.ID(), perr, i.proc.Tail(20))
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s is not passing in Consul after %s; its log: %s", missing, within, filepath.Join(l.cfg.State, "logs", missing+".log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// supervise restarts an instance that exits on its own, at most 5 times a minute.
func (l *Lab) supervise(i *instance) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			l.mu.Lock()
			p := i.proc
			l.mu.Unlock()
			select {
			case <-l.stopping:
				return
			case <-p.Done():
			}
			select {
			case <-l.stopping:
				return
			default:
			}
			_, exitErr := p.Exited()
			now := time.Now()
			recent := i.restarts[:0]
			for _, t := range i.restarts {
				if now.Sub(t) < time.Minute {
					recent = append(recent, t)
				}
			}
			i.restarts = recent
			if len(i.restarts) >= 5 {
				l.say("%s exited (%v) and was restarted 5 times in a minute; giving up. Last log lines:\n%s", i.ID(), exitErr, p.Tail(15))
				return
			}
			l.say("%s exited (%v); restarting it", i.ID(), exitErr)
			i.restarts = append(i.restarts, now)
			select {
			case <-l.stopping:
				return
			case <-time.After(time.Second):
			}
			if err := l.startInstance(i); err != nil {
				l.say("restarting %s failed: %v", i.ID(), err)
				continue
			}
			_ = l.writeState()
			l.mu.Lock()
			pid := i.proc.PID()
			l.mu.Unlock()
			l.say("%s is back (pid %d)", i.ID(), pid)
		}
	}()
}

// Instances describes the running instances.
func (l *Lab) Instances() []Instance {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Instance, 0, len(l.instances))
	for _, i := range l.instances {
		out = append(out, Instance{ID: i.ID(), Service: i.Service.Name, Port: i.port, PID: i.proc.PID(), Log: i.logPath})
	}
	return out
}

// state is what lab.json holds, for tools and tests that look at a running lab.
type state struct {
	PID          int        `json:"pid"`
	Front        string     `json:"front"`
	ConsulUI     string     `json:"consul_ui"`
	ConsulAddr   string     `json:"consul_addr"`
	ConsulPID    int        `json:"consul_pid"`
	PostgresPID  int        `json:"postgres_pid"`
	PostgresPort int        `json:"postgres_port"`
	ReadySeconds float64    `json:"ready_seconds"`
	Instances    []Instance `json:"instances"`
	Prometheus   string     `json:"prometheus,omitempty"` // its URL, when the lab runs it
	PromPID      int        `json:"prometheus_pid,omitempty"`
}

func (l *Lab) writeState() error {
	s := state{PID: os.Getpid(), Front: l.cfg.FrontURL(), ConsulUI: l.cfg.ConsulUIURL(), ConsulAddr: l.cfg.consulAddr(),
		ConsulPID: l.consul.PID(), PostgresPID: l.pg.PID(), PostgresPort: PostgresPort + l.cfg.PortOffset,
		ReadySeconds: l.ready.Seconds(), Instances: l.Instances(), Prometheus: l.PrometheusURL()}
	if l.prom != nil {
		s.PromPID = l.prom.PID()
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.cfg.State, "lab.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.cfg.State, "lab.json"))
}

// OperatorEnv is the environment an operator's command for service needs against the running lab in state:
// the service's own database (and, for auth, its key-encryption key). It fails when no lab is running.
func OperatorEnv(state, service string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(state, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("no running lab in %s (start it with: make run): %w", state, err)
	}
	var st struct {
		PostgresPort int `json:"postgres_port"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.PostgresPort == 0 {
		return nil, fmt.Errorf("%s/lab.json does not name PostgreSQL's port; restart the lab (make run)", state)
	}
	pw, err := os.ReadFile(filepath.Join(state, "secrets", "postgres-"+service+".password"))
	if err != nil {
		return nil, fmt.Errorf("the lab has no database password for %s: %w", service, err)
	}
	env := []string{"DATABASE_URL=" + (&pgcluster.Cluster{Port: st.PostgresPort}).DSN(service, service, string(pw))}
	if service == "auth" {
		env = append(env, "AUTH_KEY_ENCRYPTION_KEY_FILE="+keyPath(state, "auth"))
	}
	return env, nil
}

// startPrometheus runs Prometheus beside the lab when it is installed, scraping every instance through Consul;
// without it the lab runs all the same and says how to get it.
func (l *Lab) startPrometheus(ctx context.Context) error {
	if l.cfg.PrometheusSource == "" {
		return nil
	}
	bin := prometheusBinary()
	if bin == "" {
		l.say("Prometheus: not installed, so not started (to have it: sudo apt-get install --no-install-recommends prometheus)")
		return nil
	}
	port := PrometheusPort + l.cfg.PortOffset
	if !proc.PortFree(fmt.Sprintf("127.0.0.1:%d", port)) {
		l.say("Prometheus: port 127.0.0.1:%d is taken, so not started", port)
		return nil
	}
	dir := filepath.Join(l.cfg.State, "prometheus")
	l.say("starting Prometheus on 127.0.0.1:%d (data in %s)", port, dir)
	consul, err := consulx.NewClient(consulx.ClientConfig{Address: l.cfg.consulAddr()})
	if err != nil {
		return err
	}
	p, err := StartPrometheus(ctx, PrometheusOptions{Binary: bin, Dir: dir, Source: l.cfg.PrometheusSource, Port: port, Consul: consul,
		ConsulAddr: l.cfg.consulAddr(), LogPath: filepath.Join(l.cfg.State, "logs", "prometheus.log"),
		Params: PrometheusParams{ScrapeInterval: 5 * time.Second, ScrapeTimeout: 2 * time.Second}})
	if err != nil {
		// The shop does not need it: say why and go on without it.
		l.say("Prometheus did not start, the lab runs without it: %v", err)
		return nil
	}
	l.prom = p
	return nil
}

// PrometheusURL is the lab's Prometheus, "" when it runs none.
func (l *Lab) PrometheusURL() string {
	if l.prom == nil {
		return ""
	}
	return l.prom.URL
}

// Ready is how long Start took until every instance was passing.
func (l *Lab) Ready() time.Duration { return l.ready }

// Stop stops every instance (SIGTERM: each deregisters and drains), then PostgreSQL, then Consul. Every
// process it started is gone when it returns.
func (l *Lab) Stop() error {
	select {
	case <-l.stopping:
		return nil
	default:
		close(l.stopping)
	}
	l.wg.Wait()
	var errs []error
	if l.prom != nil {
		errs = append(errs, l.prom.Stop())
	}
	var wg sync.WaitGroup
	var emu sync.Mutex
	l.mu.Lock()
	for _, i := range l.instances {
		if i.proc == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := i.proc.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	l.mu.Unlock()
	wg.Wait()
	if l.pg != nil {
		errs = append(errs, l.pg.Stop())
	}
	if l.consul != nil {
		errs = append(errs, l.consul.Stop())
	}
	if l.lock != nil {
		_ = os.Remove(filepath.Join(l.cfg.State, "lab.json"))
		l.lock.Close()
	}
	return errors.Join(errs...)
}

// ServiceEnv is what a service gets of the operator's environment: the variables it reads (those every service
// reads, and its own, named after it: FRONT_…, AUTH_…) and what any process needs (PATH, locale, the Go
// runtime's), never the rest — an operator's tokens, keys and passwords stay with the operator.
func ServiceEnv(environ []string, service string) []string {
	prefixes := []string{"LOG_", "CHECK_", "DB_", "SHUTDOWN_", "DEREGISTER_", "JWKS_", "MESH_", "LC_", strings.ToUpper(service) + "_"}
	exact := map[string]bool{"PATH": true, "TZ": true, "LANG": true, "TMPDIR": true,
		"GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true, "GODEBUG": true, "GOTRACEBACK": true}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if exact[name] || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(name, p) }) {
			out = append(out, kv)
		}
	}
	return out
}
