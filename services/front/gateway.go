package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/balancer"
	"shoplab/internal/consulx"
	"shoplab/internal/mesh"
	"shoplab/internal/web"
)

// gateway routes /api/{service}/{path} to a passing instance of a public Consul service. It keeps one
// discovery watch per routed service (created on first use), balances with power of two choices on in-flight
// requests, ejects instances that refuse or reset connections, and retries a request once on another
// instance when that is safe and the retry budget allows.
type gateway struct {
	ctx      context.Context
	log      hclog.Logger
	consul   *api.Client
	identity *mesh.Identity // the front's own, presented to Connect-native services
	services *consulx.ServiceList
	watch    consulx.WatchOptions
	eject    balancer.Options

	transport *http.Transport // plain HTTP, to instances that are not Connect-native
	timeouts  routeTimeouts
	budget    *retryBudget
	metrics   *gatewayMetrics

	mu sync.RWMutex
	// targets are the public services routed since start. One whose instances all went away stays here and
	// answers 503 (known, none passing) rather than 404.
	targets map[string]*target
}

// target is one routed service.
type target struct {
	name    string
	watcher *consulx.Watcher
	lb      *balancer.Balancer
	mtls    *http.Transport // mutual TLS with the front's identity; the peer must be this service
}

// routeTimeouts is the time allowed for one attempt at an upstream request, per service, and for the whole
// request, retries included (it stays within the server's write timeout, so a client always gets an answer).
type routeTimeouts struct {
	def        time.Duration
	perService map[string]time.Duration
	request    time.Duration
}

// minAttempt is the least time left for a retry to be worth sending.
const minAttempt = 500 * time.Millisecond

func (rt routeTimeouts) of(service string) time.Duration {
	if d, ok := rt.perService[service]; ok {
		return d
	}
	return rt.def
}

// parseRouteTimeouts reads "orders=30s,catalog=5s".
func parseRouteTimeouts(s string, def, request time.Duration) (routeTimeouts, error) {
	rt := routeTimeouts{def: def, perService: map[string]time.Duration{}, request: request}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, v, ok := strings.Cut(part, "=")
		d, err := time.ParseDuration(v)
		if !ok || err != nil || d <= 0 || !serviceNameRe.MatchString(name) {
			return rt, errors.New("FRONT_ROUTE_TIMEOUTS: want service=duration pairs such as orders=30s,catalog=5s")
		}
		rt.perService[name] = d
	}
	return rt, nil
}

func newGateway(ctx context.Context, log hclog.Logger, consul *api.Client, identity *mesh.Identity, services *consulx.ServiceList, timeouts routeTimeouts, m *gatewayMetrics) *gateway {
	return &gateway{
		ctx: ctx, log: log.Named("gateway"), consul: consul, identity: identity, services: services, timeouts: timeouts, metrics: m,
		transport: upstreamTransport(nil),
		budget:    newRetryBudget(0.2, 10),
		targets:   map[string]*target{},
	}
}

func upstreamTransport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: 2 * time.Second,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

var (
	errUnknownService  = errors.New("unknown service")
	errNoInstance      = errors.New("no passing instance")
	errUpstreamTimeout = errors.New("upstream timeout")
	errBadGateway      = errors.New("upstream failed")
	errMeshDenied      = errors.New("refused by an intention")
)

// target returns the routed service name, creating its watch on first use. Only services tagged public in
// Consul are routed; an internal or unknown one is errUnknownService.
func (g *gateway) target(name string) (*target, error) {
	g.mu.RLock()
	t := g.targets[name]
	g.mu.RUnlock()
	if t == nil && !g.services.Answered() {
		// Just started: wait (briefly) for Consul's first list rather than call a known service unknown.
		ctx, cancel := context.WithTimeout(g.ctx, 2*time.Second)
		_ = g.services.Ready(ctx)
		cancel()
	}
	known, public := g.services.Lookup(name, consulx.TagPublic)
	if t != nil {
		// A routed service stays routed while it is gone from the catalog (503: known, none passing), but
		// one that is there without the public tag is not routed any more.
		if known && !public {
			return nil, errUnknownService
		}
		return t, nil
	}
	if !serviceNameRe.MatchString(name) || !known || !public {
		return nil, errUnknownService
	}
	g.mu.Lock()
	if t = g.targets[name]; t == nil {
		t = &target{name: name, watcher: consulx.WatchService(g.ctx, g.consul, name, g.log, g.watch), lb: balancer.New(g.eject),
			mtls: upstreamTransport(g.identity.ClientTLS(name))}
		t.watcher.OnChange(func(in []consulx.Instance) { t.lb.Update(publicOnly(in)) })
		g.targets[name] = t
	}
	g.mu.Unlock()
	// The first request to a service waits (briefly) for its first discovery answer.
	ctx, cancel := context.WithTimeout(g.ctx, 2*time.Second)
	defer cancel()
	_ = t.watcher.Ready(ctx)
	return t, nil
}

// publicOnly keeps the instances that registered as public: one re-registered without the tag stops
// receiving traffic at the next discovery update.
func publicOnly(in []consulx.Instance) []consulx.Instance {
	out := make([]consulx.Instance, 0, len(in))
	for _, i := range in {
		if slices.Contains(i.Tags, consulx.TagPublic) {
			out = append(out, i)
		}
	}
	return out
}

// prime starts the watches of every public service Consul knows now, so the first requests do not wait.
func (g *gateway) prime() {
	for _, name := range g.services.Names() {
		if _, public := g.services.Lookup(name, consulx.TagPublic); public {
			_, _ = g.target(name)
		}
	}
}

// targetList returns the routed services.
func (g *gateway) targetList() []*target {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]*target, 0, len(g.targets))
	for _, t := range g.targets {
		out = append(out, t)
	}
	return out
}

// setClientAddr tells the service who the client is: X-Forwarded-For is the client's own address as this
// front saw it. Whatever the client sent in that header is dropped, so nobody can pose as another address
// (auth's login limits apply per client address).
func setClientAddr(h http.Header, r *http.Request) {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		h.Set("X-Forwarded-For", ip)
	} else {
		h.Del("X-Forwarded-For")
	}
}

// hopHeaders are connection-level headers a proxy must not forward (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func copyHeader(dst, src http.Header, skip func(string) bool) {
	for k, vv := range src {
		if skip != nil && skip(k) {
			continue
		}
		dst[k] = vv
	}
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// upstreamSkip is what never goes upstream: hop-by-hop headers and the browser's cookies (the session cookie
// has been turned into a bearer token; services do not read cookies).
func upstreamSkip(k string) bool { return isHop(k) || k == "Cookie" }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// forward sends r (its body already read into body) to an instance of t at path, retrying once elsewhere
// when safe, and copies the answer back. It returns why no answer came (errNoInstance, errUpstreamTimeout or
// errBadGateway) without writing anything, or nil once the answer is written.
func (g *gateway) forward(w http.ResponseWriter, r *http.Request, t *target, path string, body []byte) error {
	start := time.Now()
	deadline := start.Add(g.timeouts.request)
	g.budget.request()
	var (
		tried     []*balancer.Endpoint
		lastErr   error
		retries   int
		retryable bool
	)
	for attempt := 0; attempt < 2; attempt++ {
		ep, err := t.lb.Pick(tried...)
		if err != nil {
			if lastErr == nil {
				lastErr = errNoInstance
			}
			break
		}
		if attempt == 0 {
			// The service says, in its Consul meta, which of its routes may be sent twice.
			retryable = ep.Retry.Allows(r.Method, path, r.Header)
		}
		tried = append(tried, ep)
		resp, cancel, err := g.roundTrip(r, t, ep, path, body, deadline, retryable)
		if err == nil && resp.Header.Get(mesh.DeniedHeader) != "" {
			resp.Body.Close()
			err = errMeshDenied
		}
		if errors.Is(err, errMeshDenied) || mesh.IsRefused(err) {
			// The service refuses the front itself (an intention): no instance is at fault, none is retried.
			cancel()
			g.log.Warn("call refused by the mesh", "service", t.name, "instance", ep.ID, "error", err)
			web.LogFields(r, "service", t.name, "error", "mesh: "+err.Error())
			return errMeshDenied
		}
		if err == nil {
			t.lb.Succeeded(ep)
			g.respond(w, r, t.name, ep, resp, retries, start)
			cancel()
			return nil
		}
		cancel()
		lastErr = err
		if balancer.ConnFailure(err) {
			d := t.lb.Eject(ep)
			g.metrics.ejections.WithLabelValues(t.name, ep.ID).Inc()
			g.log.Warn("instance failed; ejected", "service", t.name, "instance", ep.ID, "for", d, "error", err)
		}
		// A retry must fit in what is left of the client's time (FRONT_REQUEST_TIMEOUT).
		if r.Context().Err() != nil || !(retryable || balancer.NotSent(err)) || time.Until(deadline) < minAttempt || !g.budget.allowRetry() {
			break
		}
		retries++
		g.metrics.retries.WithLabelValues(t.name).Inc()
	}
	web.LogFields(r, "service", t.name, "retries", retries, "error", errString(lastErr))
	switch {
	case errors.Is(lastErr, errNoInstance):
		return errNoInstance
	case errors.Is(lastErr, context.DeadlineExceeded):
		return errUpstreamTimeout
	default:
		return errBadGateway
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// roundTrip makes one attempt; the caller calls cancel once done with the answer.
func (g *gateway) roundTrip(r *http.Request, t *target, ep *balancer.Endpoint, path string, body []byte, deadline time.Time, replayable bool) (*http.Response, context.CancelFunc, error) {
	attempt := time.Now().Add(g.timeouts.of(t.name))
	if attempt.After(deadline) {
		attempt = deadline
	}
	ctx, cancel := context.WithDeadline(r.Context(), attempt)
	scheme, tr := "http", g.transport
	if ep.Native {
		scheme, tr = "https", t.mtls
	}
	out := &http.Request{
		Method:     r.Method,
		URL:        &url.URL{Scheme: scheme, Host: ep.HostPort(), Path: path, RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(r.Header)+3),
		Host:       ep.HostPort(),
	}
	out = out.WithContext(ctx)
	copyHeader(out.Header, r.Header, upstreamSkip)
	if len(body) > 0 {
		out.ContentLength = int64(len(body))
		out.Body = io.NopCloser(bytes.NewReader(body))
		// Without GetBody the transport never replays a request by itself: whether one may be sent twice is
		// the service's call (its retry policy), not the transport's.
		if replayable {
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
	}
	out.Header.Set(web.RequestIDHeader, web.RequestID(r.Context()))
	setClientAddr(out.Header, r)
	out.Header.Set("X-Forwarded-Host", r.Host)
	out.Header.Set("X-Forwarded-Proto", "http")
	end := ep.Begin()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		end()
		return nil, cancel, err
	}
	resp.Body = &endOnClose{ReadCloser: resp.Body, end: end}
	return resp, cancel, nil
}

type endOnClose struct {
	io.ReadCloser
	end  func()
	once sync.Once
}

func (e *endOnClose) Close() error {
	err := e.ReadCloser.Close()
	e.once.Do(e.end)
	return err
}

func (g *gateway) respond(w http.ResponseWriter, r *http.Request, service string, ep *balancer.Endpoint, resp *http.Response, retries int, start time.Time) {
	defer resp.Body.Close()
	h := w.Header()
	copyHeader(h, resp.Header, isHop)
	h.Set(web.RequestIDHeader, web.RequestID(r.Context()))
	w.WriteHeader(resp.StatusCode)
	bp := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(w, resp.Body, *bp)
	copyBufs.Put(bp)
	if err != nil {
		g.log.Debug("copying the answer stopped", "service", service, "instance", ep.ID, "error", err)
	}
	g.metrics.observe(service, ep.ID, resp.StatusCode, time.Since(start))
	web.LogFields(r, "service", service, "upstream", ep.ID, "upstream_status", resp.StatusCode, "retries", retries)
}

// retryBudget allows retries up to ratio of the requests of the current second, and at least minPerSec, so a
// failing service is not hit with twice its load.
type retryBudget struct {
	ratio     float64
	minPerSec int

	mu       sync.Mutex
	sec      int64
	requests int
	retries  int
}

func newRetryBudget(ratio float64, minPerSec int) *retryBudget {
	return &retryBudget{ratio: ratio, minPerSec: minPerSec}
}

func (b *retryBudget) roll() {
	if now := time.Now().Unix(); now != b.sec {
		b.sec, b.requests, b.retries = now, 0, 0
	}
}

func (b *retryBudget) request() {
	b.mu.Lock()
	b.roll()
	b.requests++
	b.mu.Unlock()
}

func (b *retryBudget) allowRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roll()
	if b.retries >= max(b.minPerSec, int(b.ratio*float64(b.requests))) {
		return false
	}
	b.retries++
	return true
}
