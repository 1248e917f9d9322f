package consulx

import (
	"context"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Instance is one passing instance of a service as Consul reports it.
type Instance struct {
	ID      string
	Service string
	Node    string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Retry   RetryPolicy // what the instance says may be retried (from its meta)
	Native  bool        // Connect-native: its port takes mutual TLS from mesh services only
}

// HostPort is the instance's address as host:port.
func (i Instance) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// WatchOptions tunes a watcher; the zero value is sensible.
type WatchOptions struct {
	WaitTime   time.Duration // how long a blocking query may be held open (default 30s)
	MinBackoff time.Duration // first retry delay after an error (default 100ms)
	MaxBackoff time.Duration // retry delay cap (default 5s)
	MinGap     time.Duration // least time between two queries, so a churning index cannot spin (default 10ms)
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.WaitTime <= 0 {
		o.WaitTime = 30 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MinGap <= 0 {
		o.MinGap = 10 * time.Millisecond
	}
	return o
}

// blockingQuery is one round of a watch: it asks Consul with the given index and returns the new index.
type blockingQuery func(ctx context.Context, opts *api.QueryOptions) (uint64, error)

// loopState is what a watch loop reports about its connection to Consul.
type loopState struct {
	mu           sync.Mutex
	connected    bool
	everAnswered bool
	lastAnswer   time.Time
	lastErr      error
	firstDone    chan struct{}
	firstOnce    sync.Once
}

func newLoopState() *loopState { return &loopState{firstDone: make(chan struct{})} }

func (s *loopState) answered() {
	s.mu.Lock()
	s.connected, s.everAnswered, s.lastAnswer, s.lastErr = true, true, time.Now(), nil
	s.mu.Unlock()
	s.firstOnce.Do(func() { close(s.firstDone) })
}

func (s *loopState) failed(err error) {
	s.mu.Lock()
	s.connected, s.lastErr = false, err
	s.mu.Unlock()
}

// Health describes a watcher's view of Consul.
type Health struct {
	Connected bool          // the last query to Consul succeeded
	Staleness time.Duration // 0 while connected; otherwise how long since Consul last answered
	LastError string        // the last error, while disconnected
	Answered  bool          // Consul has answered at least once
}

func (s *loopState) health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{Connected: s.connected, Answered: s.everAnswered}
	if !s.connected {
		if s.everAnswered {
			h.Staleness = time.Since(s.lastAnswer)
		}
		if s.lastErr != nil {
			h.LastError = s.lastErr.Error()
		}
	}
	return h
}

// runBlocking drives query until ctx ends, following Consul's advice for blocking queries: the index is reset
// when it goes backwards, an index of 0 is never sent again after the first call (1 is used instead, so the
// query blocks rather than spins), errors back off with capped jitter, and two queries are at least MinGap apart.
func runBlocking(ctx context.Context, o WatchOptions, st *loopState, log hclog.Logger, query blockingQuery) {
	var index uint64
	backoff := o.MinBackoff
	for ctx.Err() == nil {
		started := time.Now()
		opts := (&api.QueryOptions{WaitIndex: index, WaitTime: o.WaitTime, AllowStale: true}).WithContext(ctx)
		next, err := query(ctx, opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if st.health().Connected {
				log.Warn("consul query failed; keeping the last known instances", "error", err)
			}
			st.failed(err)
			sleep(ctx, backoff/2+rand.N(backoff/2+1))
			backoff = min(backoff*2, o.MaxBackoff)
			continue
		}
		if !st.health().Connected && st.health().Answered {
			log.Info("consul answers again")
		}
		st.answered()
		backoff = o.MinBackoff
		switch {
		case next < index:
			index = 0 // the index went backwards (a snapshot restore, a new leader): start over
		case next == 0:
			index = 1
		default:
			index = next
		}
		if gap := time.Since(started); gap < o.MinGap {
			sleep(ctx, o.MinGap-gap)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Watcher follows the passing instances of one service. When Consul is unreachable it keeps returning the
// last set it saw (last-known-good).
type Watcher struct {
	service string
	state   *loopState

	mu        sync.RWMutex
	instances []Instance
	listeners []func([]Instance)
}

// WatchService starts a watcher for service; it runs until ctx ends.
func WatchService(ctx context.Context, client *api.Client, service string, log hclog.Logger, o WatchOptions) *Watcher {
	o = o.withDefaults()
	w := &Watcher{service: service, state: newLoopState()}
	log = log.Named("discovery").With("service", service)
	go runBlocking(ctx, o, w.state, log, func(ctx context.Context, opts *api.QueryOptions) (uint64, error) {
		entries, meta, err := client.Health().Service(service, "", true, opts)
		if err != nil {
			return 0, err
		}
		w.set(toInstances(entries), log)
		return meta.LastIndex, nil
	})
	return w
}

func toInstances(entries []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, Instance{
			ID: e.Service.ID, Service: e.Service.Service, Node: e.Node.Node, Address: addr, Port: e.Service.Port,
			Tags: e.Service.Tags, Meta: e.Service.Meta, Retry: RetryPolicyFromMeta(e.Service.Meta),
			Native: e.Service.Connect != nil && e.Service.Connect.Native,
		})
	}
	slices.SortFunc(out, func(a, b Instance) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}

func sameInstances(a, b []Instance) bool {
	return slices.EqualFunc(a, b, func(x, y Instance) bool {
		return x.ID == y.ID && x.Address == y.Address && x.Port == y.Port && x.Node == y.Node && x.Native == y.Native &&
			slices.Equal(x.Tags, y.Tags) && maps.Equal(x.Meta, y.Meta)
	})
}

func (w *Watcher) set(next []Instance, log hclog.Logger) {
	w.mu.Lock()
	if sameInstances(w.instances, next) && w.instances != nil {
		w.mu.Unlock()
		return
	}
	w.instances = next
	listeners := slices.Clone(w.listeners)
	w.mu.Unlock()
	log.Debug("instances changed", "count", len(next))
	for _, f := range listeners {
		f(next)
	}
}

// Service is the name being watched.
func (w *Watcher) Service() string { return w.service }

// Instances returns the passing instances last seen (nil before Consul first answered).
func (w *Watcher) Instances() []Instance {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.instances
}

// OnChange calls f with the current set (if any) and again whenever the set changes. f must not block.
func (w *Watcher) OnChange(f func([]Instance)) {
	w.mu.Lock()
	w.listeners = append(w.listeners, f)
	cur := w.instances
	w.mu.Unlock()
	if cur != nil {
		f(cur)
	}
}

// Answered reports, without waiting, whether Consul has answered once.
func (w *Watcher) Answered() bool {
	select {
	case <-w.state.firstDone:
		return true
	default:
		return false
	}
}

// Ready waits until Consul has answered once, or ctx ends.
func (w *Watcher) Ready(ctx context.Context) error {
	select {
	case <-w.state.firstDone:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Health reports the watcher's connection to Consul.
func (w *Watcher) Health() Health { return w.state.health() }

// ServiceList follows the names and tags of every service in the catalog (one small blocking query; it changes
// only when a service appears or goes away, not on health changes).
type ServiceList struct {
	state *loopState
	mu    sync.RWMutex
	tags  map[string][]string
}

// WatchServiceList starts following the catalog's service list until ctx ends.
func WatchServiceList(ctx context.Context, client *api.Client, log hclog.Logger, o WatchOptions) *ServiceList {
	o = o.withDefaults()
	l := &ServiceList{state: newLoopState()}
	go runBlocking(ctx, o, l.state, log.Named("discovery").With("watch", "services"), func(ctx context.Context, opts *api.QueryOptions) (uint64, error) {
		services, meta, err := client.Catalog().Services(opts)
		if err != nil {
			return 0, err
		}
		l.mu.Lock()
		l.tags = services
		l.mu.Unlock()
		return meta.LastIndex, nil
	})
	return l
}

// Lookup tells whether service is in the catalog and whether it carries tag.
func (l *ServiceList) Lookup(service, tag string) (known, tagged bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	tags, known := l.tags[service]
	return known, slices.Contains(tags, tag)
}

// Names returns every service name in the catalog.
func (l *ServiceList) Names() []string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	names := make([]string, 0, len(l.tags))
	for n := range l.tags {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Ready waits until Consul has answered once, or ctx ends.
func (l *ServiceList) Ready(ctx context.Context) error {
	select {
	case <-l.state.firstDone:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Health reports the list's connection to Consul.
func (l *ServiceList) Health() Health { return l.state.health() }

// Answered reports, without waiting, whether Consul has answered once.
func (l *ServiceList) Answered() bool {
	select {
	case <-l.state.firstDone:
		return true
	default:
		return false
	}
}

// Follower is a blocking-query loop of the caller's own (Follow): what it reports about its connection.
type Follower struct{ state *loopState }

// Follow runs query as a blocking-query loop — with the index handling, backoff and spacing of the
// service watches — until ctx ends. query asks Consul with opts, keeps what it got, and returns the index.
func Follow(ctx context.Context, o WatchOptions, log hclog.Logger, query func(ctx context.Context, opts *api.QueryOptions) (uint64, error)) *Follower {
	f := &Follower{state: newLoopState()}
	go runBlocking(ctx, o.withDefaults(), f.state, log, query)
	return f
}

// Ready waits until Consul has answered once, or ctx ends.
func (f *Follower) Ready(ctx context.Context) error {
	select {
	case <-f.state.firstDone:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Health reports the loop's connection to Consul.
func (f *Follower) Health() Health { return f.state.health() }
