// Package balancer spreads requests over the passing instances of one service: power of two choices on
// in-flight requests, with passive outlier ejection of instances that refuse or reset connections.
package balancer

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"shoplab/internal/consulx"
)

// ErrNoInstances means the service has no passing instance (or none left to try).
var ErrNoInstances = errors.New("no passing instance")

// Endpoint is one instance as the balancer tracks it.
type Endpoint struct {
	consulx.Instance
	inflight     atomic.Int64
	requests     atomic.Uint64
	failures     atomic.Int32 // consecutive connection failures
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected
}

// InFlight is the number of requests now outstanding on the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// Requests is the number of requests ever sent to the endpoint.
func (e *Endpoint) Requests() uint64 { return e.requests.Load() }

// Begin counts a request as in flight; call the returned function when it ends.
func (e *Endpoint) Begin() (end func()) {
	e.Acquire()
	return e.Release
}

// Acquire counts a request as in flight (without Begin's closure, for hot paths); Release ends it.
func (e *Endpoint) Acquire() {
	e.inflight.Add(1)
	e.requests.Add(1)
}

// Release ends a request counted by Acquire.
func (e *Endpoint) Release() { e.inflight.Add(-1) }

func (e *Endpoint) ejected(now int64) bool { return e.ejectedUntil.Load() > now }

// EjectedUntil is when the ejection ends (zero if not ejected).
func (e *Endpoint) EjectedUntil() time.Time {
	if u := e.ejectedUntil.Load(); u > time.Now().UnixNano() {
		return time.Unix(0, u)
	}
	return time.Time{}
}

// Options tunes ejection.
type Options struct {
	BaseEjection time.Duration // first ejection (default 2s); doubles per consecutive failure
	MaxEjection  time.Duration // cap (default 30s)
}

// Balancer holds the endpoints of one service. Update replaces the set in place: an instance that stays keeps
// its counters and ejection state, so a Consul update neither drops connections nor resets balancing.
type Balancer struct {
	opts Options

	mu        sync.RWMutex
	endpoints []*Endpoint
}

// New returns an empty balancer.
func New(o Options) *Balancer {
	if o.BaseEjection <= 0 {
		o.BaseEjection = 2 * time.Second
	}
	if o.MaxEjection <= 0 {
		o.MaxEjection = 30 * time.Second
	}
	return &Balancer{opts: o}
}

// Update sets the instances to balance over.
func (b *Balancer) Update(instances []consulx.Instance) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := make(map[string]*Endpoint, len(b.endpoints))
	for _, e := range b.endpoints {
		old[e.ID] = e
	}
	next := make([]*Endpoint, 0, len(instances))
	for _, in := range instances {
		if e, ok := old[in.ID]; ok && e.HostPort() == in.HostPort() {
			e.Instance = in
			next = append(next, e)
			continue
		}
		next = append(next, &Endpoint{Instance: in})
	}
	b.endpoints = next
}

// Endpoints returns the current endpoints.
func (b *Balancer) Endpoints() []*Endpoint {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]*Endpoint(nil), b.endpoints...)
}

// Pick chooses an endpoint other than those in exclude: of two random eligible endpoints, the one with fewer
// requests in flight. Ejected endpoints are eligible only when every other one is ejected too (better to try
// an instance Consul calls passing than to fail outright).
func (b *Balancer) Pick(exclude ...*Endpoint) (*Endpoint, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	now := time.Now().UnixNano()
	var (
		buf       [16]*Endpoint
		eligible  = buf[:0]
		anyOption = false
	)
	for _, e := range b.endpoints {
		if excluded(e, exclude) {
			continue
		}
		anyOption = true
		if !e.ejected(now) {
			eligible = append(eligible, e)
		}
	}
	if !anyOption {
		return nil, ErrNoInstances
	}
	if len(eligible) == 0 {
		for _, e := range b.endpoints {
			if !excluded(e, exclude) {
				eligible = append(eligible, e)
			}
		}
	}
	if len(eligible) == 1 {
		return eligible[0], nil
	}
	i := rand.IntN(len(eligible))
	j := rand.IntN(len(eligible) - 1)
	if j >= i {
		j++
	}
	a, c := eligible[i], eligible[j]
	if c.inflight.Load() < a.inflight.Load() {
		return c, nil
	}
	return a, nil
}

func excluded(e *Endpoint, exclude []*Endpoint) bool {
	for _, x := range exclude {
		if x == e {
			return true
		}
	}
	return false
}

// Eject takes e out of rotation after a connection failure, for BaseEjection doubled per consecutive failure
// up to MaxEjection. When the time is up the next request re-probes it.
func (b *Balancer) Eject(e *Endpoint) time.Duration {
	n := e.failures.Add(1)
	d := b.opts.BaseEjection
	for i := int32(1); i < n && d < b.opts.MaxEjection; i++ {
		d *= 2
	}
	d = min(d, b.opts.MaxEjection)
	e.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	return d
}

// Succeeded records that e answered, ending any ejection streak.
func (b *Balancer) Succeeded(e *Endpoint) {
	if e.failures.Load() != 0 {
		e.failures.Store(0)
	}
	if e.ejectedUntil.Load() != 0 {
		e.ejectedUntil.Store(0)
	}
}
