// Package consulx registers shoplab services in Consul and discovers them: self-registration with an HTTP
// readiness check, and watchers that follow the passing instances of a service with blocking queries.
package consulx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Visibility tags. The front routes /api/{service}/ only to services tagged TagPublic.
const (
	TagPublic   = "public"
	TagInternal = "internal"
	MetaPublic  = "public"
	// MetaMetricsPort names the port where an instance serves /metrics in plain HTTP (its health check's
	// port): Prometheus' discovery scrapes every instance that registers it, there.
	MetaMetricsPort = "metrics_port"
)

// ClientConfig describes how to reach the local Consul agent; the names follow Consul's own tools.
type ClientConfig struct {
	Address string // CONSUL_HTTP_ADDR: host:port, or http(s)://host:port
	Token   string // CONSUL_HTTP_TOKEN
	// Timeout bounds every call of the client (0: none, as blocking queries need; their own wait bounds them).
	Timeout time.Duration
}

// NewClient returns a Consul API client with pooled connections. Address and Token, when set, win over the
// CONSUL_* variables the Consul library reads from the process environment.
func NewClient(cc ClientConfig) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if cc.Address != "" {
		cfg.Address = cc.Address
	}
	if cc.Token != "" {
		cfg.Token = cc.Token
	}
	// Blocking queries hold a connection open for WaitTime; the transport must allow several at once.
	cfg.Transport.MaxIdleConnsPerHost = 16
	if cc.Timeout > 0 {
		// Built as the library would (CONSUL_CACERT and the other TLS settings apply), then bounded.
		hc, err := api.NewHttpClient(cfg.Transport, cfg.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("consul client for %s: %w", cc.Address, err)
		}
		hc.Timeout = cc.Timeout
		cfg.HttpClient = hc
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cc.Address, err)
	}
	return c, nil
}

// Registration is one service instance as it registers itself.
type Registration struct {
	Name    string
	ID      string // unique per instance
	Address string // the address other nodes reach it at (a VM has several NICs: never guess)
	Port    int
	Public  bool
	Tags    []string
	Meta    map[string]string

	// Native registers a Connect-native instance: Port serves mutual TLS with the service's mesh identity.
	Native bool
	// CheckPort is where Consul's HTTP check reaches the plain health endpoints (default Port). A
	// Connect-native instance keeps them on a plain operations port, so a check never needs an intention.
	CheckPort       int
	CheckPath       string        // default /health/ready
	CheckInterval   time.Duration // default 2s
	CheckTimeout    time.Duration // default 1s
	DeregisterAfter time.Duration // DeregisterCriticalServiceAfter, default 1m
	// InitialPassing registers the check as passing. Set it only when the caller has just checked the same
	// readiness itself, so traffic need not wait for the agent's first check run.
	InitialPassing bool
}

func (r Registration) withDefaults() Registration {
	if r.CheckPort == 0 {
		r.CheckPort = r.Port
	}
	if r.CheckPath == "" {
		r.CheckPath = "/health/ready"
	}
	if r.CheckInterval <= 0 {
		r.CheckInterval = 2 * time.Second
	}
	if r.CheckTimeout <= 0 {
		r.CheckTimeout = time.Second
	}
	if r.DeregisterAfter <= 0 {
		r.DeregisterAfter = time.Minute
	}
	return r
}

// Validate reports a registration that cannot work.
func (r Registration) Validate() error {
	switch {
	case r.Name == "":
		return errors.New("registration: service name is empty")
	case r.ID == "":
		return errors.New("registration: instance id is empty")
	case net.ParseIP(r.Address) == nil:
		return fmt.Errorf("registration: advertise address %q is not an IP address", r.Address)
	case net.ParseIP(r.Address).IsUnspecified():
		return fmt.Errorf("registration: advertise address %s is unspecified; set the address other nodes reach this one at", r.Address)
	case r.Port <= 0 || r.Port > 65535 || r.CheckPort < 0 || r.CheckPort > 65535:
		return fmt.Errorf("registration: port %d out of range", r.Port)
	}
	return nil
}

func (r Registration) agentRegistration() *api.AgentServiceRegistration {
	r = r.withDefaults()
	tags := append([]string{}, r.Tags...)
	meta := map[string]string{}
	for k, v := range r.Meta {
		meta[k] = v
	}
	meta[MetaMetricsPort] = strconv.Itoa(r.CheckPort)
	if r.Public {
		tags = append(tags, TagPublic)
		meta[MetaPublic] = "true"
	} else {
		tags = append(tags, TagInternal)
		meta[MetaPublic] = "false"
	}
	status := api.HealthCritical
	if r.InitialPassing {
		status = api.HealthPassing
	}
	hostPort := net.JoinHostPort(r.Address, strconv.Itoa(r.CheckPort))
	var connect *api.AgentServiceConnect
	if r.Native {
		connect = &api.AgentServiceConnect{Native: true}
	}
	return &api.AgentServiceRegistration{
		Connect: connect,
		ID:      r.ID,
		Name:    r.Name,
		Address: r.Address,
		Port:    r.Port,
		Tags:    tags,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + r.ID + ":ready",
			Name:                           r.Name + " ready",
			HTTP:                           "http://" + hostPort + r.CheckPath,
			Method:                         http.MethodGet,
			Interval:                       r.CheckInterval.String(),
			Timeout:                        r.CheckTimeout.String(),
			DeregisterCriticalServiceAfter: r.DeregisterAfter.String(),
			Status:                         status,
		},
	}
}

// Registrar keeps one instance registered in the local agent until Deregister. Every call to the agent has
// a timeout; while the agent cannot be reached the registrar keeps trying (backing off to 5 s), so a service
// started before its agent serves at once and registers as soon as the agent answers.
type Registrar struct {
	client      *api.Client
	reg         Registration
	log         hclog.Logger
	ready       func(context.Context) error
	callTimeout time.Duration

	mu         sync.Mutex
	registered bool
	lastErr    error

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

func newRegistrar(client *api.Client, reg Registration, log hclog.Logger, ready func(context.Context) error) (*Registrar, error) {
	if err := reg.Validate(); err != nil {
		return nil, err
	}
	reg = reg.withDefaults()
	return &Registrar{client: client, reg: reg, log: log.Named("consul"), ready: ready, callTimeout: max(reg.CheckTimeout, 5*time.Second),
		lastErr: errors.New("not registered yet"), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Register registers reg with the local agent now (an error when the agent refuses or cannot be reached) and
// keeps it registered: if the agent forgets it (an agent restarted in dev mode, say), it is registered again
// within the check interval times five.
func Register(ctx context.Context, client *api.Client, reg Registration, log hclog.Logger) (*Registrar, error) {
	r, err := newRegistrar(client, reg, log, nil)
	if err != nil {
		return nil, err
	}
	if err := r.register(ctx); err != nil {
		return nil, err
	}
	go r.keep()
	return r, nil
}

// StartRegistration returns at once and registers reg in the background, retrying until the agent answers,
// then keeps it registered like Register. ready, if set, is asked before each registration: an instance that
// is ready then registers with its check already passing. Status tells how it stands.
func StartRegistration(client *api.Client, reg Registration, log hclog.Logger, ready func(context.Context) error) (*Registrar, error) {
	r, err := newRegistrar(client, reg, log, ready)
	if err != nil {
		return nil, err
	}
	go r.keep()
	return r, nil
}

func (r *Registrar) register(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	reg := r.reg
	if r.ready != nil {
		reg.InitialPassing = r.ready(ctx) == nil
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	err := r.client.Agent().ServiceRegisterOpts(reg.agentRegistration(), opts)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.registered, r.lastErr = false, fmt.Errorf("register %s in consul: %w", r.reg.ID, err)
		return r.lastErr
	}
	r.registered, r.lastErr = true, nil
	r.reg.InitialPassing = false // a later re-registration lets the check decide
	r.log.Info("registered", "service", reg.Name, "id", reg.ID, "address", reg.Address, "port", reg.Port, "public", reg.Public, "passing", reg.InitialPassing)
	return nil
}

// Status is nil while the instance is registered, else why it is not (yet).
func (r *Registrar) Status() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.registered {
		return nil
	}
	return fmt.Errorf("not registered in Consul: %v", r.lastErr)
}

func (r *Registrar) isRegistered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// keep registers until it succeeds (backing off from 250 ms to 5 s), then checks every five check intervals
// that the agent still has the instance, registering it again if not.
func (r *Registrar) keep() {
	defer close(r.done)
	every := 5 * r.reg.CheckInterval
	backoff := 250 * time.Millisecond
	r.awaitReady(2 * time.Second)
	for {
		wait := every
		if !r.isRegistered() {
			if err := r.register(context.Background()); err != nil {
				r.log.Warn("consul agent not reachable; serving unregistered and retrying", "in", backoff, "error", err)
				wait, backoff = backoff, min(2*backoff, 5*time.Second)
			} else {
				backoff = 250 * time.Millisecond
			}
		}
		select {
		case <-r.stop:
			return
		case <-time.After(wait):
		}
		if !r.isRegistered() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.callTimeout)
		_, _, err := r.client.Agent().Service(r.reg.ID, (&api.QueryOptions{}).WithContext(ctx))
		cancel()
		if err != nil && isNotFound(err) {
			r.mu.Lock()
			r.registered, r.lastErr = false, errors.New("the agent forgot this instance")
			r.mu.Unlock()
			r.log.Info("the agent forgot this instance; registering again", "id", r.reg.ID)
		}
	}
}

// awaitReady gives an instance that is about to become ready (its certificate on the way, say) up to wait to
// get there, so it registers passing rather than waiting a check interval for Consul to find out.
func (r *Registrar) awaitReady(wait time.Duration) {
	if r.ready == nil || r.isRegistered() {
		return
	}
	deadline := time.Now().Add(wait)
	for r.ready(context.Background()) != nil && time.Now().Before(deadline) {
		select {
		case <-r.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Deregister stops keeping the registration and removes it from the agent (if it was ever registered). It is
// safe to call more than once.
func (r *Registrar) Deregister(ctx context.Context) error {
	var err error
	r.stopOnce.Do(func() {
		close(r.stop)
		<-r.done
		if !r.isRegistered() {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, r.callTimeout)
		defer cancel()
		err = r.client.Agent().ServiceDeregisterOpts(r.reg.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			err = fmt.Errorf("deregister %s: %w", r.reg.ID, err)
			return
		}
		r.mu.Lock()
		r.registered = false
		r.mu.Unlock()
		r.log.Info("deregistered", "id", r.reg.ID)
	})
	return err
}
