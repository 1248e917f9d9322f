package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"gopkg.in/yaml.v3"

	"shoplab/internal/netx"
)

// runPatroniTags keeps a Patroni member's registration in Consul true to its role (each database VM of the
// lab runs it beside Patroni). Patroni registers its member with enable_tag_override, and a Consul agent's
// anti-entropy run that fetched the catalog just before Patroni's re-registration writes the catalog's old
// tags back over the new ones (hashicorp/consul#13578): a promoted member then stays tagged replica, the
// cluster has no primary.<scope>.service.consul, and Patroni, which registers only when its role changes,
// never registers again. Seen in make vm-test (2026-12-07 12:45 UTC: orders-1 promoted, its agent logged
// the check synced but not the service, and it was still tagged replica five minutes later). Every interval
// this compares the tags the local agent holds with those Patroni's role calls for and, when they differ,
// registers the member again as Patroni would.
func runPatroniTags(ctx context.Context, args []string, _ func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("patroni-tags", flag.ContinueOnError)
	config := fs.String("config", "/etc/patroni/config.yml", "Patroni's configuration: scope, name, its REST API, its Consul agent and token")
	interval := fs.Duration("interval", 10*time.Second, "how often to compare (each time a question to Patroni and one to the local agent)")
	once := fs.Bool("once", false, "compare (and repair) once, then exit")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *interval < time.Second {
		return usageError{"--interval must be at least 1s"}
	}
	m, err := loadPatroniRegistration(*config)
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "patroni-tags", Output: stderr})
	if *once {
		_, err := m.reconcile(ctx, log)
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("watching", "service", m.serviceID(), "interval", *interval)
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		if _, err := m.reconcile(ctx, log); err != nil && ctx.Err() == nil {
			log.Warn("compare failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// patroniRegistration is what patroni-tags reads of Patroni's configuration: the member and its registration.
type patroniRegistration struct {
	Scope   string `yaml:"scope"`
	Name    string `yaml:"name"`
	RestAPI struct {
		ConnectAddress string `yaml:"connect_address"`
		CertFile       string `yaml:"certfile"` // set: the REST API is HTTPS
		CAFile         string `yaml:"cafile"`   // what its certificate is verified against (empty: the system's roots)
	} `yaml:"restapi"`
	Consul struct {
		Host          string   `yaml:"host"`
		Token         string   `yaml:"token"`
		ServiceTags   []string `yaml:"service_tags"`
		CheckInterval string   `yaml:"service_check_interval"`
	} `yaml:"consul"`

	consul *api.Client
	http   *http.Client
}

func loadPatroniRegistration(path string) (*patroniRegistration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("patroni-tags: %w", err)
	}
	var m patroniRegistration
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("patroni-tags: %s: %w", path, err)
	}
	if m.Scope == "" || m.Name == "" || m.RestAPI.ConnectAddress == "" || m.Consul.Host == "" {
		return nil, fmt.Errorf("patroni-tags: %s: want scope, name, restapi.connect_address and consul.host", path)
	}
	if m.Consul.CheckInterval == "" {
		m.Consul.CheckInterval = "5s" // Patroni's default
	}
	cfg := api.DefaultConfig()
	cfg.Address, cfg.Token = m.Consul.Host, m.Consul.Token
	if m.consul, err = api.NewClient(cfg); err != nil {
		return nil, fmt.Errorf("patroni-tags: %w", err)
	}
	transport, err := netx.TrustingTransport(m.RestAPI.CAFile)
	if err != nil {
		return nil, fmt.Errorf("patroni-tags: restapi.cafile: %w", err)
	}
	m.http = &http.Client{Timeout: 3 * time.Second, Transport: transport}
	return &m, nil
}

// apiURL is path on the member's REST API, HTTPS when Patroni serves it so.
func (m *patroniRegistration) apiURL(path string) string {
	scheme := "http"
	if m.RestAPI.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + m.RestAPI.ConnectAddress + path
}

// serviceID is the member's registration as Patroni names it.
func (m *patroniRegistration) serviceID() string { return m.Scope + "/" + m.Name }

// wantTags are the tags Patroni registers a member in role with: its configured tags and the role's (the
// leader both master and primary, as Patroni 3 writes them); ok is false for a role Patroni does not register.
func (m *patroniRegistration) wantTags(role string) (tags []string, ok bool) {
	role = strings.ReplaceAll(role, "_", "-")
	tags = append(slices.Clone(m.Consul.ServiceTags), role)
	switch role {
	case "master":
		tags = append(tags, "primary")
	case "primary":
		tags = append(tags, "master")
	case "replica", "standby-leader":
	default:
		return nil, false
	}
	return tags, true
}

// reconcile registers the member again when the local agent's tags differ from those its running Patroni's
// role calls for; repaired says it did. A member Patroni has not registered, or that is not running, is
// Patroni's own business.
func (m *patroniRegistration) reconcile(ctx context.Context, log hclog.Logger) (repaired bool, err error) {
	role, err := m.role(ctx)
	if err != nil || role == "" {
		return false, err
	}
	role = strings.ReplaceAll(role, "_", "-") // as Patroni names a role in Consul: standby-leader
	want, ok := m.wantTags(role)
	if !ok {
		return false, nil
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	svc, _, err := m.consul.Agent().Service(m.serviceID(), q)
	var status api.StatusError
	switch {
	case errors.As(err, &status) && status.Code == http.StatusNotFound:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("the agent's registration of %s: %w", m.serviceID(), err)
	case sameTags(svc.Tags, want):
		return false, nil
	}
	reg := &api.AgentServiceRegistration{
		ID: svc.ID, Name: svc.Service, Address: svc.Address, Port: svc.Port, Tags: want, EnableTagOverride: true,
		Check: &api.AgentServiceCheck{
			HTTP:                           m.apiURL("/" + role),
			Interval:                       m.Consul.CheckInterval,
			DeregisterCriticalServiceAfter: "150s", // Patroni's: ten times its Consul session's half-TTL
		},
	}
	if err := m.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return false, fmt.Errorf("register %s again: %w", m.serviceID(), err)
	}
	log.Warn("registered the member again: the agent held other tags than its role's (hashicorp/consul#13578)",
		"service", m.serviceID(), "role", role, "held", strings.Join(svc.Tags, ","), "tags", strings.Join(want, ","))
	return true, nil
}

// role is the member's role as its Patroni reports it, or "" while it is not running.
func (m *patroniRegistration) role(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.apiURL("/patroni"), nil)
	if err != nil {
		return "", err
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask Patroni: %w", err)
	}
	defer resp.Body.Close()
	var st struct {
		State string `json:"state"`
		Role  string `json:"role"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return "", fmt.Errorf("Patroni's /patroni: %w", err)
	}
	if st.State != "running" && st.State != "streaming" { // a replica of a newer Patroni reports streaming
		return "", nil
	}
	return st.Role, nil
}

// sameTags says whether a and b hold the same tags, in any order.
func sameTags(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
