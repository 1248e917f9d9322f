package main

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/balancer"
	"shoplab/internal/consulx"
	"shoplab/internal/web"
)

// statusReport is the public status page's data: every service, its instances and their health, as Consul and
// the gateway see them. It is public, so it names no address and repeats no check output or error text:
// operators get those from the Consul UI or `shoplab status`.
type statusReport struct {
	GeneratedAt string          `json:"generated_at"`
	Consul      statusConsul    `json:"consul"`
	Services    []statusService `json:"services"`
}

type statusConsul struct {
	Connected        bool    `json:"connected"`
	StalenessSeconds float64 `json:"staleness_seconds"`
}

type statusService struct {
	Name      string           `json:"name"`
	Public    bool             `json:"public"`
	Routed    bool             `json:"routed"` // the gateway has a watch on it
	Source    string           `json:"source"` // "consul", or "last_known" when Consul could not be asked
	Passing   int              `json:"passing"`
	Instances []statusInstance `json:"instances"`
	// Traffic is what the gateway answered for a routed service, second by second (the page's plots).
	Traffic *trafficSeries `json:"traffic,omitempty"`
}

type statusInstance struct {
	ID      string         `json:"id"`
	Node    string         `json:"node"`
	Status  string         `json:"status"` // passing, warning or critical: the worst of its checks
	Checks  []statusCheck  `json:"checks"`
	Gateway *gatewayStatus `json:"gateway,omitempty"`
}

type statusCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// gatewayStatus is the gateway's own view of an instance.
type gatewayStatus struct {
	InFlight     int64  `json:"in_flight"`
	Requests     uint64 `json:"requests"`
	EjectedUntil string `json:"ejected_until,omitempty"`
}

func gatewayView(e *balancer.Endpoint) *gatewayStatus {
	gs := &gatewayStatus{InFlight: e.InFlight(), Requests: e.Requests()}
	if u := e.EjectedUntil(); !u.IsZero() {
		gs.EjectedUntil = u.UTC().Format(time.RFC3339Nano)
	}
	return gs
}

// buildStatus asks Consul for every service's instances and checks (all of them, not only passing), and adds
// the gateway's view. When Consul cannot be asked, routed services show the gateway's last known instances.
func buildStatus(ctx context.Context, g *gateway) statusReport {
	h := g.services.Health()
	rep := statusReport{GeneratedAt: time.Now().UTC().Format(time.RFC3339), Consul: statusConsul{Connected: h.Connected, StalenessSeconds: h.Staleness.Seconds()}}
	routed := map[string]*target{}
	for _, t := range g.targetList() {
		routed[t.name] = t
	}
	names := g.services.Names()
	for n := range routed {
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		_, public := g.services.Lookup(name, consulx.TagPublic)
		t := routed[name]
		svc := statusService{Name: name, Public: public || t != nil, Routed: t != nil, Source: "consul", Instances: []statusInstance{}}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		entries, _, err := g.consul.Health().Service(name, "", false, (&api.QueryOptions{AllowStale: true}).WithContext(qctx))
		cancel()
		eps := map[string]*balancer.Endpoint{}
		if t != nil {
			for _, e := range t.lb.Endpoints() {
				eps[e.ID] = e
			}
		}
		if err != nil {
			rep.Consul.Connected = false
			svc.Source = "last_known"
			for _, e := range eps {
				svc.Instances = append(svc.Instances, statusInstance{ID: e.ID, Node: e.Node,
					Status: "passing (last known)", Checks: []statusCheck{}, Gateway: gatewayView(e)})
			}
		}
		for _, e := range entries {
			in := statusInstance{ID: e.Service.ID, Node: e.Node.Node, Status: e.Checks.AggregatedStatus(), Checks: []statusCheck{}}
			for _, c := range e.Checks {
				in.Checks = append(in.Checks, statusCheck{Name: c.Name, Status: c.Status})
			}
			if ep, ok := eps[in.ID]; ok {
				in.Gateway = gatewayView(ep)
			}
			svc.Instances = append(svc.Instances, in)
		}
		sort.Slice(svc.Instances, func(i, j int) bool { return svc.Instances[i].ID < svc.Instances[j].ID })
		if t != nil {
			series := t.traffic.series()
			svc.Traffic = &series
		}
		for _, in := range svc.Instances {
			if strings.HasPrefix(in.Status, api.HealthPassing) {
				svc.Passing++
			}
		}
		rep.Services = append(rep.Services, svc)
	}
	return rep
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func handleStatusJSON(log hclog.Logger, g *gateway) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		web.WriteJSON(w, http.StatusOK, buildStatus(r.Context(), g))
	})
}
