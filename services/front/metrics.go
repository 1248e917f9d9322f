package main

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"shoplab/internal/metrics"
)

// gatewayMetrics are the front's own metrics, per routed service and instance.
type gatewayMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	ejections *prometheus.CounterVec
}

func newGatewayMetrics(reg *metrics.Registry) *gatewayMetrics {
	m := &gatewayMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoplab_front_upstream_requests_total", Help: "Requests proxied, by service, instance and status.",
		}, []string{"service", "instance", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shoplab_front_upstream_duration_seconds", Help: "Time from receiving a request to the end of its answer, by service.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoplab_front_retries_total", Help: "Requests retried on another instance, by service.",
		}, []string{"service"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoplab_front_ejections_total", Help: "Instances ejected after a refused or reset connection.",
		}, []string{"service", "instance"}),
	}
	reg.MustRegister(m.requests, m.duration, m.retries, m.ejections)
	return m
}

// upstreamObservers are one instance's metrics with their label values resolved once.
type upstreamObservers struct {
	m                 *gatewayMetrics
	service, instance string
	duration          prometheus.Observer
	ejections         prometheus.Counter
	codes             sync.Map // status code → prometheus.Counter
}

func (m *gatewayMetrics) upstream(service, instance string) *upstreamObservers {
	return &upstreamObservers{m: m, service: service, instance: instance, duration: m.duration.WithLabelValues(service),
		ejections: m.ejections.WithLabelValues(service, instance)}
}

// observe records one answer of the instance: its status and the time since the front received the request.
func (o *upstreamObservers) observe(code int, took time.Duration) {
	c, ok := o.codes.Load(code)
	if !ok {
		c, _ = o.codes.LoadOrStore(code, o.m.requests.WithLabelValues(o.service, o.instance, strconv.Itoa(code)))
	}
	c.(prometheus.Counter).Inc()
	o.duration.Observe(took.Seconds())
}

func (m *gatewayMetrics) retried(service string) { m.retries.WithLabelValues(service).Inc() }

// gatewayState exports, at scrape time, what the gateway sees now: Consul staleness and each instance's
// in-flight requests and ejection.
type gatewayState struct{ g *gateway }

var (
	descStale    = prometheus.NewDesc("shoplab_front_consul_stale_seconds", "Seconds since Consul last answered the gateway (0 while connected).", nil, nil)
	descInFlight = prometheus.NewDesc("shoplab_front_instance_in_flight", "Requests in flight to an instance.", []string{"service", "instance"}, nil)
	descEjected  = prometheus.NewDesc("shoplab_front_instance_ejected", "1 while an instance is ejected.", []string{"service", "instance"}, nil)
)

func (s gatewayState) Describe(ch chan<- *prometheus.Desc) {
	ch <- descStale
	ch <- descInFlight
	ch <- descEjected
}

func (s gatewayState) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, s.g.services.Health().Staleness.Seconds())
	for _, t := range s.g.targetList() {
		for _, e := range t.lb.Endpoints() {
			ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(e.InFlight()), t.name, e.ID)
			ejected := 0.0
			if !e.EjectedUntil().IsZero() {
				ejected = 1
			}
			ch <- prometheus.MustNewConstMetric(descEjected, prometheus.GaugeValue, ejected, t.name, e.ID)
		}
	}
}
