package main

import (
	"strconv"
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

func (m *gatewayMetrics) observe(service, instance string, code int, took time.Duration) {
	m.requests.WithLabelValues(service, instance, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(service).Observe(took.Seconds())
}

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
