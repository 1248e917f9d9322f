// Package app holds the configuration and the start and stop sequence every shoplab service shares: read the
// environment, log with hclog, listen, register in Consul once ready, and on SIGTERM deregister, drain, exit.
package app

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/health"
	"shoplab/internal/mesh"
	"shoplab/internal/metrics"
	"shoplab/internal/pgdb"
	"shoplab/internal/topology"
	"shoplab/internal/web"
)

// Config is what every service reads from its environment. Each field's variable and default are given in Load.
type Config struct {
	Service         string
	Listen          string
	Advertise       string
	InstanceID      string
	DatabaseURL     string
	DatabaseReadURL string // a member of the database's cluster, for reads while it has no primary (pgdb.ReadFrom)
	// DatabaseReadCluster and DatabaseReadMember say when DatabaseReadURL may be read (PatroniGate): the
	// Patroni cluster's keys in Consul's KV store (its namespace and scope: shoplab/catalog-db) and the member
	// DatabaseReadURL reaches (catalog-2). Both required with DatabaseReadURL, and only with it.
	DatabaseReadCluster string
	DatabaseReadMember  string
	Consul              consulx.ClientConfig
	LogLevel            string
	LogJSON             bool
	LogFlush            time.Duration // how long log lines may wait to be written together (0: each at once)
	CheckInterval       time.Duration
	CheckTimeout        time.Duration
	DeregisterAfter     time.Duration
	ShutdownTimeout     time.Duration
	ShutdownGrace       time.Duration
	DBWait              time.Duration // how long a starting service waits for its database to answer
	DBRetryWait         time.Duration // how long a statement waits for a primary during a failover (pgdb)
	DBFailoverGrace     time.Duration // how long readiness only warns while the database has no primary
	JWKSRefresh         time.Duration // how often a verifying service fetches auth's signing keys again
	OpsListen           string        // where a mesh service serves /health and /metrics in plain HTTP
	MeshAuthzTTL        time.Duration // how long an intention decision is cached per caller
}

// Load reads the shared configuration of service from getenv. LISTEN_ADDR defaults to the service's port in
// provisioning/topology.yml on loopback; a service the topology lacks must set it.
func Load(service string, getenv func(string) string) (Config, error) {
	env := NewEnv(getenv)
	defaultListen := ""
	if port, err := topology.Default().Port(service); err == nil {
		defaultListen = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	c := Config{
		Service:     service,
		Listen:      env.String("LISTEN_ADDR", defaultListen),
		Advertise:   env.String("ADVERTISE_ADDR", ""),
		InstanceID:  env.String("SERVICE_ID", ""),
		DatabaseURL: env.String("DATABASE_URL", ""),
		// Empty: reads wait for the primary like writes (one PostgreSQL, as in make run).
		DatabaseReadURL:     env.String("DATABASE_READ_URL", ""),
		DatabaseReadCluster: env.String("DATABASE_READ_CLUSTER", ""),
		DatabaseReadMember:  env.String("DATABASE_READ_MEMBER", ""),
		Consul: consulx.ClientConfig{
			Address: env.String("CONSUL_HTTP_ADDR", "127.0.0.1:8500"),
			Token:   env.String("CONSUL_HTTP_TOKEN", ""),
		},
		LogLevel:        env.String("LOG_LEVEL", "info"),
		LogJSON:         env.String("LOG_FORMAT", "text") == "json",
		LogFlush:        env.Duration("LOG_FLUSH_INTERVAL", 100*time.Millisecond),
		CheckInterval:   env.Duration("CHECK_INTERVAL", 2*time.Second),
		CheckTimeout:    env.Duration("CHECK_TIMEOUT", time.Second),
		DeregisterAfter: env.Duration("DEREGISTER_CRITICAL_AFTER", time.Minute),
		ShutdownTimeout: env.Duration("SHUTDOWN_TIMEOUT", 10*time.Second),
		ShutdownGrace:   env.Duration("SHUTDOWN_GRACE", 200*time.Millisecond),
		DBWait:          env.Duration("DB_WAIT", time.Minute),
		DBRetryWait:     env.Duration("DB_RETRY_WAIT", 3*time.Second),
		DBFailoverGrace: env.Duration("DB_FAILOVER_GRACE", 5*time.Second),
		JWKSRefresh:     env.Duration("JWKS_REFRESH", time.Minute),
		OpsListen:       env.String("OPS_LISTEN_ADDR", ""),
		MeshAuthzTTL:    env.Duration("MESH_AUTHZ_TTL", 500*time.Millisecond),
	}
	if c.Listen == "" {
		env.fail("LISTEN_ADDR", "", "host:port to listen on (provisioning/topology.yml gives "+service+" no port)")
	}
	if f := env.String("LOG_FORMAT", "text"); f != "text" && f != "json" {
		env.fail("LOG_FORMAT", f, "text or json")
	}
	if hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		env.fail("LOG_LEVEL", c.LogLevel, "trace, debug, info, warn or error")
	}
	for _, kv := range [][2]string{{"DATABASE_READ_CLUSTER", c.DatabaseReadCluster}, {"DATABASE_READ_MEMBER", c.DatabaseReadMember}} {
		name, v := kv[0], kv[1]
		switch {
		case (c.DatabaseReadURL == "") != (v == ""):
			env.fail(name, v, "set with DATABASE_READ_URL and only with it (the Patroni cluster's keys in Consul, namespace/scope, and the member DATABASE_READ_URL reaches)")
		case strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.Contains(v, "//") ||
			(name == "DATABASE_READ_MEMBER" && strings.Contains(v, "/")):
			env.fail(name, v, "a Consul key path without a leading or trailing slash (DATABASE_READ_MEMBER: a member's name, no slash)")
		}
	}
	return c, env.Err()
}

// Env reads typed configuration from an environment, remembering the first bad value.
type Env struct {
	getenv func(string) string
	err    error
}

// NewEnv wraps getenv.
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

func (e *Env) fail(name, value, want string) {
	if e.err == nil {
		e.err = fmt.Errorf("%s=%q: want %s", name, value, want)
	}
}

// Err is the first bad value met, if any.
func (e *Env) Err() error { return e.err }

// String returns the variable, or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// Duration returns the variable parsed as a Go duration ("2s"), or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v := e.String(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail(name, v, "a duration such as 2s or 500ms")
		return def
	}
	return d
}

// Int returns the variable as an integer within [lo, hi], or def.
func (e *Env) Int(name string, def, lo, hi int) int {
	v := e.String(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		e.fail(name, v, fmt.Sprintf("an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

// Logger returns the service's root logger, writing to w.
func (c Config) Logger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       c.Service,
		Level:      hclog.LevelFromString(c.LogLevel),
		JSONFormat: c.LogJSON,
		Output:     w,
		TimeFormat: time.RFC3339Nano,
	})
}

// ConsulClient returns a client for the configured agent.
func (c Config) ConsulClient() (*api.Client, error) { return consulx.NewClient(c.Consul) }

// Service describes what Serve registers.
type Service struct {
	Handler http.Handler
	Public  bool
	// Mesh serves the API over mutual TLS with the service's mesh identity (Connect-native): only mesh services
	// that an intention allows get in. /health and /metrics are then served in plain HTTP on the operations
	// listener (OPS_LISTEN_ADDR) instead, where Consul's check and an operator's scraper reach them.
	Mesh bool
	// Ops serves /health and /metrics on the operations listener (OPS_LISTEN_ADDR) alone, never on the API's
	// port, without the mesh: the front, whose port faces the internet (a mesh service always does). With an
	// Engine, Handler is what the operations listener serves, and the Engine keeps those paths off itself
	// (APIOnly).
	Ops bool
	// Ready is the service's own readiness (its database); the registrar asks it before registering, so an
	// instance that is ready is passing in Consul at once.
	Ready func(ctx context.Context) error
	Meta  map[string]string
	// Retry is what the service says may be retried (the gateway reads it from Consul meta).
	Retry consulx.RetryPolicy
	// Server adjusts the http.Server (timeouts) before serving, if set.
	Server func(*http.Server)
	// Engine, if set, serves the API instead of an http.Server made from Handler (the front's gateway).
	Engine web.Engine
	// Listening, if set, is called with the bound address once the listener is open (tests use it).
	Listening func(addr net.Addr)
}

// registration is the instance's registration in Consul, shared between Serve (which starts it) and the
// readiness check (which reports it) — the check exists before Serve runs.
type registration struct {
	mu        sync.Mutex
	registrar *consulx.Registrar
}

func (r *registration) set(reg *consulx.Registrar) {
	r.mu.Lock()
	r.registrar = reg
	r.mu.Unlock()
}

// check reports a missing registration as a warning: the instance serves, but Consul does not send it
// traffic yet.
func (r *registration) check(context.Context) error {
	r.mu.Lock()
	reg := r.registrar
	r.mu.Unlock()
	if reg == nil {
		return health.Degraded(errors.New("not registered in Consul yet"))
	}
	if err := reg.Status(); err != nil {
		return health.Degraded(err)
	}
	return nil
}

// serve listens, starts registering the instance in Consul (in the background: a service started while its
// agent is down serves at once and registers when the agent answers) and serves until ctx ends; then it
// deregisters, waits ShutdownGrace so watchers drop the instance, drains for up to ShutdownTimeout and returns.
// A mesh service takes mutual TLS on LISTEN_ADDR and serves its health and metrics on OPS_LISTEN_ADDR; so does
// a service with Ops, in plain HTTP on both.
func serve(ctx context.Context, c Config, log hclog.Logger, consul *api.Client, s Service, state *registration, id *mesh.Identity) error {
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (LISTEN_ADDR): %w", c.Listen, err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	handler := s.Handler
	var (
		ops     *http.Server
		opsLn   net.Listener
		opsPort int
	)
	if s.Mesh || s.Ops {
		if opsLn, err = net.Listen("tcp", opsListenAddr(c.OpsListen, addr)); err != nil {
			return fmt.Errorf("listen on %s (OPS_LISTEN_ADDR): %w", c.OpsListen, err)
		}
		defer opsLn.Close()
		opsPort = opsLn.Addr().(*net.TCPAddr).Port
		handler = APIOnly(s.Handler)
		if s.Mesh {
			authz, err := mesh.NewAuthorizer(c.Consul, c.Service, c.MeshAuthzTTL, log)
			if err != nil {
				return err
			}
			ln = tls.NewListener(ln, id.ServerTLS(authz))
			handler = authz.Require(handler)
		}
		ops = web.NewServer(opsOnly(s.Handler), log.Named("ops"))
		go func() {
			if err := ops.Serve(opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("operations listener stopped", "error", err)
			}
		}()
		defer ops.Close()
	}
	if s.Listening != nil {
		s.Listening(addr)
	}
	advertise, err := advertiseAddr(c.Advertise, addr)
	if err != nil {
		return err
	}
	instanceID := c.InstanceID
	if instanceID == "" {
		host, _ := os.Hostname()
		instanceID = fmt.Sprintf("%s-%s-%d", c.Service, host, addr.Port)
	}
	log = log.With("instance", instanceID)

	meta := map[string]string{}
	maps.Copy(meta, s.Retry.Meta())
	maps.Copy(meta, s.Meta)
	if opsLn != nil {
		meta[MetaOpsPort] = strconv.Itoa(opsPort)
	}
	reg := consulx.Registration{
		Name: c.Service, ID: instanceID, Address: advertise, Port: addr.Port, Public: s.Public, Meta: meta,
		Native: s.Mesh, CheckPort: opsPort,
		CheckInterval: c.CheckInterval, CheckTimeout: c.CheckTimeout, DeregisterAfter: c.DeregisterAfter,
	}
	// An instance registers passing only when it can serve: its own readiness, and for a mesh service its
	// certificate.
	ready := func(ctx context.Context) error {
		if s.Mesh {
			if err := id.Ready(ctx); err != nil {
				return err
			}
		}
		if s.Ready == nil {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, c.CheckTimeout+time.Second)
		defer cancel()
		return s.Ready(rctx)
	}
	registrar, err := consulx.StartRegistration(consul, reg, log, ready)
	if err != nil {
		return err
	}
	state.set(registrar)
	var srv web.Engine = s.Engine
	if srv == nil {
		hs := web.NewServer(handler, log)
		if s.Server != nil {
			s.Server(hs)
		}
		srv = hs
	}
	if opsLn != nil {
		log.Info("serving", "listen", addr.String(), "mtls", s.Mesh, "ops", opsLn.Addr().String(), "advertise", advertise)
	} else {
		log.Info("serving", "listen", addr.String(), "advertise", advertise)
	}
	return web.Serve(ctx, log, srv, ln, c.ShutdownTimeout, func(ctx context.Context) {
		if err := registrar.Deregister(ctx); err != nil {
			log.Warn("deregistration failed; the check will turn critical and Consul will drop the instance", "error", err)
		}
		if c.ShutdownGrace > 0 {
			time.Sleep(c.ShutdownGrace)
		}
	})
}

// MetaOpsPort is the service meta key naming a mesh instance's plain operations port (health, metrics): an
// operator's scraper reads it from Consul.
const MetaOpsPort = "ops_port"

// opsListenAddr is OPS_LISTEN_ADDR, or by default the API's own host with a port the system picks.
func opsListenAddr(configured string, api *net.TCPAddr) string {
	if configured != "" {
		return configured
	}
	return net.JoinHostPort(api.IP.String(), "0")
}

// isOps reports the operations paths: health and metrics.
func isOps(path string) bool {
	return strings.HasPrefix(path, "/health/") || path == "/metrics"
}

// APIOnly keeps the operations paths (health, metrics) off the API's port: they answer 404 there.
func APIOnly(h http.Handler) http.Handler {
	notFound := web.Handler(web.NotFoundHandler(), web.Options{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isOps(r.URL.Path) {
			notFound.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// opsOnly serves the operations paths alone.
func opsOnly(h http.Handler) http.Handler {
	notFound := web.Handler(web.NotFoundHandler(), web.Options{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isOps(r.URL.Path) {
			notFound.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func advertiseAddr(configured string, bound *net.TCPAddr) (string, error) {
	if configured != "" {
		ip := net.ParseIP(configured)
		if ip == nil || ip.IsUnspecified() {
			return "", fmt.Errorf("ADVERTISE_ADDR=%q: want the IP address other nodes reach this one at", configured)
		}
		return ip.String(), nil
	}
	if bound.IP.IsUnspecified() {
		return "", fmt.Errorf("listening on all interfaces (%s): set ADVERTISE_ADDR to the address other nodes reach this one at", bound)
	}
	return bound.IP.String(), nil
}

// OpenDatabase opens DATABASE_URL (waiting up to DB_WAIT for it to answer), applies the migrations in the
// "migrations" directory of fsys, exports the pool's statistics to reg, and returns the pool with the
// readiness check "database answers and its schema is current". With DATABASE_READ_URL, consul is where its
// gate asks (PatroniGate).
func (c Config) OpenDatabase(ctx context.Context, log hclog.Logger, fsys fs.FS, reg *metrics.Registry, consul *api.Client) (*pgdb.DB, func(context.Context) error, error) {
	db, err := pgdb.Open(ctx, c.DatabaseURL, c.DBWait, log)
	if err != nil {
		return nil, nil, err
	}
	migrations, err := fs.Sub(fsys, "migrations")
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	schema, err := pgdb.Migrate(ctx, db, migrations, log)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	reg.WatchDB(db, c.Service)
	wrapped := pgdb.WrapRetrying(db, c.DBRetryWait, log.Named("db"))
	var (
		reads *sql.DB
		gate  func(context.Context) bool
	)
	if c.DatabaseReadURL != "" {
		if reads, err = pgdb.Pool(c.DatabaseReadURL); err != nil {
			db.Close()
			return nil, nil, fmt.Errorf("DATABASE_READ_URL: %w", err)
		}
		gate = PatroniGate(consul, c.DatabaseReadCluster, c.DatabaseReadMember, log.Named("db"))
		wrapped.ReadFrom(reads, gate)
	}
	return wrapped, readiness(schema, db, reads, gate, c.DBFailoverGrace), nil
}

// PatroniGate is the read gate (pgdb.ReadFrom) of member, a member of the Patroni cluster whose state is kept
// under cluster in Consul's KV store (Patroni's namespace and scope: shoplab/catalog-db). It says yes while the
// member holds the cluster's leader key, or while the sync key lists it as a synchronous standby of the leader
// that key names and no other member holds the leader key (the leader may be gone: then no commit was
// acknowledged without this standby, which with remote_apply has applied each). Patroni puts a standby into
// the sync key only once it is synchronous, and takes it out before it stops being so; Patroni's own /sync
// endpoint answers from the same key.
//
// It asks the local Consul agent rather than the member's Patroni: while Patroni promotes its PostgreSQL, its
// REST API takes seconds to answer (each GET asks the promoting server), so a gate that asked it said no at
// the moment the member became the primary, and the readiness check took the cluster's last instance out of
// rotation (make vm-test, 2026-12-07: catalog unavailable for 11 s after its new primary was up). An error
// (Consul unreachable, a token without read on the keys) is a no, logged at most once a minute.
func PatroniGate(consul *api.Client, cluster, member string, log hclog.Logger) func(context.Context) bool {
	var lastLogged atomic.Int64
	fail := func(err error) bool {
		if now := time.Now().UnixNano(); now-lastLogged.Load() > int64(time.Minute) {
			lastLogged.Store(now)
			log.Warn("the read gate could not read the Patroni cluster's state; reads wait for a primary", "cluster", cluster, "error", err)
		}
		return false
	}
	kv := consul.KV()
	return func(ctx context.Context) bool {
		q := (&api.QueryOptions{}).WithContext(ctx)
		leader, _, err := kv.Get(cluster+"/leader", q)
		if err != nil {
			return fail(err)
		}
		holder := ""
		if leader != nil {
			holder = string(leader.Value)
		}
		if holder == member {
			return true
		}
		pair, _, err := kv.Get(cluster+"/sync", q)
		if err != nil {
			return fail(err)
		}
		if pair == nil {
			return false
		}
		var sync struct {
			Leader  string `json:"leader"`
			Standby string `json:"sync_standby"`
		}
		if err := json.Unmarshal(pair.Value, &sync); err != nil {
			return fail(fmt.Errorf("the sync key: %w", err))
		}
		if holder != "" && holder != sync.Leader {
			return false // a new leader whose standbys the key does not name yet
		}
		for _, s := range strings.Split(sync.Standby, ",") {
			if strings.TrimSpace(s) == member {
				return true
			}
		}
		return false
	}
}

// readiness is the database's readiness check: it fails when the database does not answer or its schema is
// not this binary's, but only warns (the instance stays in rotation) while the database has been without a
// primary for less than grace, counted from the first check that found it gone: every instance shares that
// primary, so taking them all out of rotation for a failover's few seconds would turn the requests that wait
// for the new primary (DB_RETRY_WAIT) into 503s from the front. With a replica pool (reads, nil without) it
// keeps warning for as long as the replica answers and its gate says it may be read: the instance still serves
// every read.
//
// Once a check has found the primary gone, the next ones ask the replica beside the primary rather than after
// it: a primary on a powered-off host does not refuse, it stays silent until the check's time is up, and a
// replica asked afterwards would have no time left to answer (each check has a few seconds, and Consul's
// interval is longer than grace: measuring from the last passing check would fail at the first one).
func readiness(schema *pgdb.Schema, db, reads *sql.DB, gate func(context.Context) bool, grace time.Duration) func(context.Context) error {
	var failingSince atomic.Int64 // unix nanoseconds of the first check of the current run of failures; 0 while passing
	return func(ctx context.Context) error {
		var replica <-chan error
		if reads != nil && (failingSince.Load() != 0 || grace <= 0) {
			replica = within(ctx, func() error {
				if !gate(ctx) {
					return errors.New("the replica may not have every acknowledged commit")
				}
				return reads.PingContext(ctx)
			})
		}
		err := <-within(ctx, func() error { return schema.Check(ctx, db) })
		if err == nil {
			failingSince.Store(0)
			return nil
		}
		if !pgdb.Unavailable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		now := time.Now().UnixNano()
		failingSince.CompareAndSwap(0, now)
		gone := time.Duration(now - failingSince.Load())
		if gone < grace {
			return health.Degraded(fmt.Errorf("%w (for %s; failing after %s)", err, gone.Round(time.Second), grace))
		}
		if replica != nil && <-replica == nil {
			return health.Degraded(fmt.Errorf("%w (for %s; reads served by a replica)", err, gone.Round(time.Second)))
		}
		return err
	}
}

// within runs f and delivers its error, or the context's once it ends first: lib/pq does not return from a
// statement on a connection whose host went silent until the kernel gives up on it (pgdb.TCPUserTimeout),
// whatever the context says, and a check must answer in its time.
func within(ctx context.Context, f func() error) <-chan error {
	done, out := make(chan error, 1), make(chan error, 1)
	go func() { done <- f() }()
	go func() {
		select {
		case err := <-done:
			out <- err
		case <-ctx.Done():
			out <- fmt.Errorf("database: %w", ctx.Err())
		}
	}()
	return out
}

// Runtime is what a booted service has: a context that ends on SIGINT or SIGTERM, its configuration, logger,
// metrics, database with its readiness check (when it has one), and a Consul client.
type Runtime struct {
	Ctx     context.Context
	Config  Config
	Log     hclog.Logger
	Metrics *metrics.Registry
	DB      *pgdb.DB                        // nil for a service without a database
	Ready   func(ctx context.Context) error // the database's readiness; nil without one
	Consul  *api.Client
	Mesh    *mesh.Identity // the service's mesh identity: its leaf and the CA roots, kept current
	stop    context.CancelFunc
	reg     *registration
	logs    *logOutput
}

// Checks are the readiness checks every service reports at /health/ready: its database (when it has one)
// and its registration in Consul (a warning while missing).
func (rt *Runtime) Checks() []health.Check {
	var out []health.Check
	if rt.Ready != nil {
		out = append(out, health.Check{Name: "database", Run: rt.Ready})
	}
	return append(out, health.Check{Name: "consul", Run: rt.reg.check}, health.Check{Name: "mesh", Run: rt.Mesh.Ready})
}

// Boot does what every service does first: it stops on SIGINT/SIGTERM, reads the shared configuration, sets
// up logging and metrics, opens and migrates the service's database when fsys holds its migrations (nil for
// none), and makes the Consul client. Close releases what it opened.
func Boot(ctx context.Context, service string, getenv func(string) string, stderr io.Writer, fsys fs.FS) (*Runtime, error) {
	cfg, err := Load(service, getenv)
	if err != nil {
		return nil, err
	}
	out := newLogOutput(stderr, cfg.LogFlush)
	rt := &Runtime{Config: cfg, Log: cfg.Logger(out), Metrics: metrics.New(), reg: &registration{}, logs: out}
	rt.Ctx, rt.stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	if rt.Consul, err = cfg.ConsulClient(); err != nil {
		rt.Close()
		return nil, err
	}
	if fsys != nil {
		if rt.DB, rt.Ready, err = cfg.OpenDatabase(rt.Ctx, rt.Log, fsys, rt.Metrics, rt.Consul); err != nil {
			rt.Close()
			return nil, err
		}
	}
	rt.Mesh = mesh.Start(rt.Ctx, rt.Consul, service, rt.Log)
	return rt, nil
}

// LogOutput is the writer beneath Log (lines written to it join the log's own, in order, and are flushed with
// them): for a hot path that formats its lines itself.
func (rt *Runtime) LogOutput() io.Writer { return rt.logs }

// Serve registers s in Consul and serves it until the runtime's context ends (see serve).
func (rt *Runtime) Serve(s Service) error {
	return serve(rt.Ctx, rt.Config, rt.Log, rt.Consul, s, rt.reg, rt.Mesh)
}

// Close closes the database, stops listening for signals and writes what is left of the log.
func (rt *Runtime) Close() {
	if rt.DB != nil {
		_ = rt.DB.Close()
	}
	rt.stop()
	rt.logs.Flush()
}
