package lab

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/consulx"
	"shoplab/internal/web"
)

// PatroniTag is the tag every Patroni member's registration in Consul carries (the lab's Patroni configuration
// sets it in consul.service_tags), beside its role.
const PatroniTag = "patroni"

// Discovery serves Consul's catalog in the format of Prometheus' HTTP service discovery (http_sd_configs), one
// path per scrape job of provisioning/prometheus/prometheus.yml.in (Debian 12's Prometheus is built without
// consul_sd_configs):
//
//	/services  every instance that registers meta metrics_port (every shoplab instance), at that port: a
//	           Connect-native instance's plain operations port, the front's own port
//	/patroni   every member of a Patroni cluster (tagged PatroniTag), at its REST API: its address (Patroni
//	           registers its PostgreSQL's, on the same host) and PatroniAPIPort (none when it is 0; Consul does
//	           not show the URL of the check Patroni registers)
//	/nodes     every Consul node at NodeExporterPort (none when it is 0)
//	/consul    the Consul agents, for their own metrics at /v1/agent/metrics: ConsulAgents (their own API), and
//	           every Consul node at ConsulMetricsPort (shoplab consul-metrics, which relays its agent's) unless 0
//
// Instances are listed passing or not: a failing one shows in Prometheus as up == 0 until Consul drops it.
// Each answer is read afresh from any server (stale reads allowed), never from the agent's cache: in the VM lab
// the cached service list stayed at what it was when monitor-1 first asked, and the services that registered
// later were never scraped (make vm-test, 2026-12-07; hashicorp/consul#8980). Prometheus asks every scrape
// interval: a handful of reads from a server's memory.
type Discovery struct {
	Consul            *api.Client
	NodeExporterPort  int
	PatroniAPIPort    int
	ConsulMetricsPort int
	ConsulAgents      []string
}

// sdGroup is one target group of Prometheus' HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Handler serves the four paths.
func (d Discovery) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /services", d.serve(d.services))
	mux.HandleFunc("GET /patroni", d.serve(d.patroni))
	mux.HandleFunc("GET /nodes", d.serve(func(ctx context.Context) ([]sdGroup, error) { return d.nodes(ctx, d.NodeExporterPort, nil) }))
	mux.HandleFunc("GET /consul", d.serve(func(ctx context.Context) ([]sdGroup, error) {
		groups := []sdGroup{}
		if len(d.ConsulAgents) > 0 {
			groups = append(groups, sdGroup{Targets: d.ConsulAgents, Labels: map[string]string{"service": "consul"}})
		}
		return d.nodes(ctx, d.ConsulMetricsPort, groups)
	}))
	return mux
}

func (d Discovery) serve(list func(context.Context) ([]sdGroup, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		groups, err := list(ctx)
		if err != nil {
			// Prometheus keeps the targets it had.
			web.WriteErrorStatus(w, r, http.StatusBadGateway, "consul_unavailable", "consul: "+err.Error())
			return
		}
		web.WriteJSON(w, http.StatusOK, groups)
	}
}

// query asks any server, through the local agent, bounded by ctx.
func query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{AllowStale: true}).WithContext(ctx)
}

// instances lists, as target groups, every instance of every service but Consul's own (in name order) for which
// port names a port: there, labelled with its service, instance id and node.
func (d Discovery) instances(ctx context.Context, port func(*api.ServiceEntry) int) ([]sdGroup, error) {
	services, _, err := d.Consul.Catalog().Services(query(ctx))
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(services))
	for name := range services {
		if name != "consul" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	groups := []sdGroup{}
	for _, name := range names {
		entries, _, err := d.Consul.Health().Service(name, "", false, query(ctx))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if p := port(e); p > 0 && p <= 65535 {
				groups = append(groups, sdGroup{Targets: []string{net.JoinHostPort(serviceAddress(e), strconv.Itoa(p))},
					Labels: map[string]string{"service": name, "instance": e.Service.ID, "node": e.Node.Node}})
			}
		}
	}
	return groups, nil
}

func (d Discovery) services(ctx context.Context) ([]sdGroup, error) {
	return d.instances(ctx, func(e *api.ServiceEntry) int {
		port, _ := strconv.Atoi(e.Service.Meta[consulx.MetaMetricsPort])
		return port
	})
}

func (d Discovery) patroni(ctx context.Context) ([]sdGroup, error) {
	return d.instances(ctx, func(e *api.ServiceEntry) int {
		if slices.Contains(e.Service.Tags, PatroniTag) {
			return d.PatroniAPIPort
		}
		return 0
	})
}

// nodes appends to groups every Consul node at port (none when port is 0), labelled with its name.
func (d Discovery) nodes(ctx context.Context, port int, groups []sdGroup) ([]sdGroup, error) {
	if groups == nil {
		groups = []sdGroup{}
	}
	if port == 0 {
		return groups, nil
	}
	nodes, _, err := d.Consul.Catalog().Nodes(query(ctx))
	if err != nil {
		return nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	for _, n := range nodes {
		groups = append(groups, sdGroup{Targets: []string{net.JoinHostPort(n.Address, strconv.Itoa(port))},
			Labels: map[string]string{"instance": n.Node, "node": n.Node}})
	}
	return groups, nil
}

// serviceAddress is where an instance is reached: its own address, else its node's.
func serviceAddress(e *api.ServiceEntry) string {
	if e.Service.Address != "" {
		return e.Service.Address
	}
	return e.Node.Address
}
