package main

import (
	"sync"
	"time"
)

// trafficWindow is how many seconds of a routed service's traffic the front keeps for the status page's plots.
const trafficWindow = 300

// latencyBounds are the upper bounds of the latency buckets a second keeps (a last, open bucket is beyond).
var latencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// second is one second of a service's traffic through the gateway.
type second struct {
	unix                        int64
	requests, errors, ejections uint32
	latency                     [len(latencyBounds) + 1]uint32
}

// traffic is a routed service's last trafficWindow seconds: requests, answers in error (5xx, the gateway's own
// included), ejections of its instances, and latency buckets. Its size is fixed, whatever the load.
type traffic struct {
	mu   sync.Mutex
	ring [trafficWindow]second
	now  func() time.Time
}

func newTraffic() *traffic { return &traffic{now: time.Now} }

// slot returns the ring's second for unix, emptied if it held an older one. t.mu is held.
func (t *traffic) slot(unix int64) *second {
	s := &t.ring[unix%trafficWindow]
	if s.unix != unix {
		*s = second{unix: unix}
	}
	return s
}

// record counts one answer to a client, given at now.
func (t *traffic) record(now time.Time, status int, took time.Duration) {
	b := len(latencyBounds)
	for i, bound := range latencyBounds {
		if took <= bound {
			b = i
			break
		}
	}
	t.mu.Lock()
	s := t.slot(now.Unix())
	s.requests++
	if status >= 500 {
		s.errors++
	}
	s.latency[b]++
	t.mu.Unlock()
}

// ejected counts an instance of the service ejected by the gateway.
func (t *traffic) ejected() {
	t.mu.Lock()
	t.slot(t.now().Unix()).ejections++
	t.mu.Unlock()
}

// trafficSeries is the plots' data: one point per second, oldest first, the current (unfinished) second left out.
type trafficSeries struct {
	Start      int64     `json:"start"` // unix seconds of the first point
	Requests   []uint32  `json:"requests"`
	ErrorRatio []float64 `json:"error_ratio"` // 0 in a second without requests
	P99Ms      []float64 `json:"p99_ms"`      // the upper bound of the 99th percentile's bucket; 0 without requests
	Ejections  []uint32  `json:"ejections"`
}

// series returns the last trafficWindow-1 whole seconds.
func (t *traffic) series() trafficSeries {
	now := t.now().Unix()
	n := trafficWindow - 1
	out := trafficSeries{Start: now - int64(n), Requests: make([]uint32, n), ErrorRatio: make([]float64, n),
		P99Ms: make([]float64, n), Ejections: make([]uint32, n)}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range n {
		unix := out.Start + int64(i)
		s := &t.ring[unix%trafficWindow]
		if s.unix != unix {
			continue
		}
		out.Requests[i], out.Ejections[i] = s.requests, s.ejections
		if s.requests > 0 {
			out.ErrorRatio[i] = float64(s.errors) / float64(s.requests)
			out.P99Ms[i] = p99(&s.latency, s.requests)
		}
	}
	return out
}

// p99 is the upper bound, in milliseconds, of the bucket holding the 99th percentile of n answers (the last
// bound doubled for the open bucket).
func p99(buckets *[len(latencyBounds) + 1]uint32, n uint32) float64 {
	rank := (uint64(n)*99 + 99) / 100 // ceil(0.99 n)
	var seen uint64
	for i, c := range buckets {
		seen += uint64(c)
		if seen >= rank {
			if i == len(latencyBounds) {
				return float64(2*latencyBounds[len(latencyBounds)-1]) / float64(time.Millisecond)
			}
			return float64(latencyBounds[i]) / float64(time.Millisecond)
		}
	}
	return 0
}
