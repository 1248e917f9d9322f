// Package metrics gives each service its own Prometheus registry with the Go runtime, process, HTTP and
// database-pool metrics, served at /metrics in the Prometheus text format.
package metrics

import (
	"database/sql"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is one service's metrics. A registry per service (rather than the global one) lets tests run
// several services in one process.
type Registry struct {
	*prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New returns a registry with the runtime, process and HTTP metrics registered.
func New() *Registry {
	reg := prometheus.NewRegistry()
	r := &Registry{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoplab_http_requests_total",
			Help: "HTTP requests served, by route template and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoplab_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.requests, r.duration,
	)
	return r
}

// ObserveHTTP records one finished request; it fits web.Options.Observe.
func (r *Registry) ObserveHTTP(_ *http.Request, route string, status int, took time.Duration) {
	r.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	r.duration.WithLabelValues(route).Observe(took.Seconds())
}

// WatchDB exports the connection-pool statistics of db.
func (r *Registry) WatchDB(db *sql.DB, name string) {
	r.MustRegister(collectors.NewDBStatsCollector(db, name))
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{Registry: r.Registry})
}

// Route is the request metrics of one route template, with its label values resolved once: a hot path
// observes without hashing label values per request.
type Route struct {
	reg      *Registry
	route    string
	duration prometheus.Observer
	codes    sync.Map // status code → prometheus.Counter
}

// Route returns the metrics of route (a template such as "GET /api/{service}/{path:.*}", never a raw path).
func (r *Registry) Route(route string) *Route {
	return &Route{reg: r, route: route, duration: r.duration.WithLabelValues(route)}
}

// Observe records one finished request.
func (o *Route) Observe(status int, took time.Duration) {
	c, ok := o.codes.Load(status)
	if !ok {
		c, _ = o.codes.LoadOrStore(status, o.reg.requests.WithLabelValues(o.route, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
	o.duration.Observe(took.Seconds())
}
