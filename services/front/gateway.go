package main

import (
	"context"
	"errors"
	"iter"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/balancer"
	"shoplab/internal/consulx"
	"shoplab/internal/idem"
	"shoplab/internal/mesh"
)

// gateway routes /api/{service}/{path} to a passing instance of a public Consul service. It keeps one
// discovery watch per routed service (created on first use), balances with power of two choices on in-flight
// requests, ejects instances that refuse or reset connections, and retries a request once on another
// instance when the service's own policy says it may be repeated and the retry budget allows.
//
// The hot path runs on fasthttp (github.com/valyala/fasthttp): its server and its per-upstream clients reuse
// requests, responses, buffers and keep-alive connections instead of allocating them per request, which is
// most of what net/http's reverse proxy spends its time on (docs/benchmarks.md).
type gateway struct {
	ctx      context.Context
	log      hclog.Logger
	consul   *api.Client
	identity *mesh.Identity // the front's own, presented to Connect-native services
	services *consulx.ServiceList
	watch    consulx.WatchOptions
	eject    balancer.Options

	timeouts routeTimeouts
	budget   *balancer.Budget
	metrics  *gatewayMetrics
	yield    bool // upstream connections step aside before reading an answer (yieldconn.go)

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
	traffic *traffic // the status page's plots

	mu      sync.RWMutex
	clients map[string]*upstream // by instance id
}

// upstream is the connection pool to one instance, and its metrics.
type upstream struct {
	hostPort string
	address  string
	port     int
	native   bool
	client   *fasthttp.HostClient
	obs      *upstreamObservers
}

// routeTimeouts is the time allowed for one attempt at an upstream request, per service, and for the whole
// request, retries included (it stays within the server's write timeout, so a client always gets an answer).
type routeTimeouts struct {
	def        time.Duration
	perService map[string]time.Duration
	request    time.Duration
}

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
		budget:  balancer.NewBudget(0.2, 10),
		targets: map[string]*target{},
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

// serviceName is name as a string: a routed service's own (no allocation per request), else a new one.
func (g *gateway) serviceName(name []byte) string {
	g.mu.RLock()
	t := g.targets[string(name)]
	g.mu.RUnlock()
	if t != nil {
		return t.name
	}
	return string(name)
}

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
		t.ready(g.ctx)
		return t, nil
	}
	if !serviceNameRe.MatchString(name) || !known || !public {
		return nil, errUnknownService
	}
	g.mu.Lock()
	if t = g.targets[name]; t == nil {
		t = &target{name: name, watcher: consulx.WatchService(g.ctx, g.consul, name, g.log, g.watch), lb: balancer.New(g.eject),
			clients: map[string]*upstream{}, traffic: newTraffic()}
		t.watcher.OnChange(func(in []consulx.Instance) {
			pub := publicOnly(in)
			t.lb.Update(pub)
			t.forget(pub)
		})
		g.targets[name] = t
	}
	g.mu.Unlock()
	t.ready(g.ctx)
	return t, nil
}

// ready waits (briefly) for the service's first discovery answer: the first requests to a service, whoever
// started its watch, find its instances rather than none.
func (t *target) ready(ctx context.Context) {
	if t.watcher.Answered() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = t.watcher.Ready(ctx)
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

// upstream returns the connection pool to ep, making it on first use: mutual TLS with the front's identity
// (checking that the peer is t's service) to a Connect-native instance, plain HTTP to any other.
func (g *gateway) upstream(t *target, ep *balancer.Endpoint) *upstream {
	t.mu.RLock()
	u := t.clients[ep.ID]
	t.mu.RUnlock()
	if u.serves(ep) {
		return u
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if u = t.clients[ep.ID]; u.serves(ep) {
		return u
	}
	hostPort := ep.HostPort()
	if ep.Native && g.identity.Ready(g.ctx) != nil {
		// Just started: the front's own certificate is on its way from the agent.
		ctx, cancel := context.WithTimeout(g.ctx, 2*time.Second)
		_ = g.identity.Wait(ctx)
		cancel()
	}
	c := &fasthttp.HostClient{
		Addr:                          hostPort,
		Name:                          "shoplab-front",
		NoDefaultUserAgentHeader:      true,
		MaxConns:                      2048,
		MaxIdleConnDuration:           10 * time.Second, // well under the services' 120 s: we close idle connections first
		MaxConnWaitTimeout:            time.Second,
		MaxIdemponentCallAttempts:     2, // once more, and only after a stale connection (RetryIfErr)
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		ReadBufferSize:                16 << 10,
		MaxResponseBodySize:           8 << 20,
		Dial: func(addr string) (net.Conn, error) {
			c, err := fasthttp.DialTimeout(addr, 2*time.Second)
			if err != nil {
				return nil, err
			}
			return newCheckedConn(c, g.yield), nil
		},
	}
	c.RetryIfErr = func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
		// A request written on a connection found dead left nothing behind: send it again on a fresh one.
		retry := attempts == 1 && errors.Is(err, errStaleConn)
		if retry {
			c.CloseIdleConnections() // their peer is most likely gone too: the retry dials afresh
		}
		return false, retry
	}
	if ep.Native {
		c.IsTLS = true
		c.TLSConfig = g.identity.ClientTLS(t.name)
	}
	u = &upstream{hostPort: hostPort, address: ep.Address, port: ep.Port, native: ep.Native, client: c, obs: g.metrics.upstream(t.name, ep.ID)}
	t.clients[ep.ID] = u
	return u
}

// serves reports whether u is the pool for ep as it is now registered (an instance re-registered at another
// address or with mutual TLS turned on or off gets a new one). It builds no string: it runs on every request.
func (u *upstream) serves(ep *balancer.Endpoint) bool {
	return u != nil && u.port == ep.Port && u.native == ep.Native && u.address == ep.Address
}

// forget closes the pools of instances that left.
func (t *target) forget(current []consulx.Instance) {
	keep := make(map[string]bool, len(current))
	for _, in := range current {
		keep[in.ID] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, u := range t.clients {
		if !keep[id] {
			u.client.CloseIdleConnections()
			delete(t.clients, id)
		}
	}
}

// The headers the gateway sets on every upstream request, by their canonical names.
var (
	headerForwardedHost  = []byte("X-Forwarded-Host")
	headerForwardedProto = []byte("X-Forwarded-Proto")
	headerForwardedFor   = []byte("X-Forwarded-For")
	headerRequestID      = []byte("X-Request-Id")
	valueHTTP            = []byte("http")
)

// hopHeaders are connection-level headers a proxy must not forward (RFC 9110 §7.6.1), in the canonical form
// fasthttp keeps header names in.
var hopHeaders = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// headers is what delHop needs of a fasthttp request or response header.
type headers interface {
	All() iter.Seq2[[]byte, []byte]
	Del(key string)
}

// delHop removes the hop-by-hop headers from h, and the Cookie header when cookies is set. It looks through
// h once and deletes only what is there: a Del per name, each normalising the name and scanning every header,
// was a few percent of the gateway's CPU for headers that are nearly never sent.
func delHop(h headers, cookies bool) {
	var found [len(hopHeaders) + 1]bool
	any := false
	for k := range h.All() {
		if cookies && string(k) == "Cookie" {
			found[len(hopHeaders)], any = true, true
			continue
		}
		for i, hop := range hopHeaders {
			if string(k) == hop {
				found[i], any = true, true
				break
			}
		}
	}
	if !any {
		return
	}
	for i, hop := range hopHeaders {
		if found[i] {
			h.Del(hop)
		}
	}
	if found[len(hopHeaders)] {
		h.Del("Cookie")
	}
}

// setClientAddr tells auth who the client is on the storefront's own sign-in call: X-Forwarded-For is the
// client's address as this front saw it; whatever the client sent in that header is dropped.
func setClientAddr(h http.Header, r *http.Request) {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		h.Set("X-Forwarded-For", ip)
	} else {
		h.Del("X-Forwarded-For")
	}
}

// attemptState is what forward tells the access log and metrics about one request.
type attemptState struct {
	start          time.Time // when the front received the request
	target         *target   // the routed service, once known
	upstream       *upstream // the instance that answered, once one did
	requestID      string
	instance       string
	upstreamStatus int
	retries        int
	err            error
}

// forward sends the request in ctx to an instance of t at path — once more elsewhere when the service's
// registered policy and the retry budget allow (balancer.Do, the rule svcclient follows too) — and copies the
// answer into ctx. It returns why no answer came (errNoInstance, errUpstreamTimeout, errBadGateway or
// errMeshDenied) without writing anything, or nil once the answer is in ctx.
func (g *gateway) forward(ctx *fasthttp.RequestCtx, t *target, method string, path []byte, st *attemptState) error {
	deadline := st.start.Add(g.timeouts.request)
	req := &ctx.Request
	g.upstreamRequest(ctx, path, st)
	call := balancer.Call{Method: method, Path: string(path), Keyed: len(req.Header.Peek(idem.Header)) > 0,
		Deadline: deadline, Start: st.start, Budget: g.budget}
	var answered *upstream
	res := t.lb.Do(call, func(ep *balancer.Endpoint, attempt int) error {
		u := g.upstream(t, ep)
		now := st.start // the first attempt starts when the request came; a retry reads the clock again
		if attempt > 0 {
			now = time.Now()
		}
		until := now.Add(g.timeouts.of(t.name))
		if until.After(deadline) {
			until = deadline
		}
		req.SetHost(u.hostPort)
		if u.native {
			req.URI().SetScheme("https")
		} else {
			req.URI().SetScheme("http")
		}
		ep.Acquire()
		err := u.client.DoDeadline(req, &ctx.Response, until)
		ep.Release()
		st.instance = ep.ID
		if err == nil && len(ctx.Response.Header.Peek(mesh.DeniedHeader)) > 0 {
			err = balancer.ErrDenied
		}
		if err != nil {
			ctx.Response.Reset()
			return err
		}
		answered = u
		return nil
	})
	for _, e := range res.Ejections() {
		g.upstream(t, e.Endpoint).obs.ejections.Inc()
		t.traffic.ejected()
		g.log.Warn("instance failed; ejected", "service", t.name, "instance", e.Endpoint.ID, "for", e.For, "error", e.Err)
	}
	st.retries = res.Retries
	for range res.Retries {
		g.metrics.retried(t.name)
	}
	if res.Err == nil {
		respond(ctx, st, answered)
		return nil
	}
	err := res.Err
	st.err = err
	switch {
	case balancer.Refused(err):
		// The service refuses the front itself (an intention): no instance is at fault, none was retried.
		g.log.Warn("call refused by the mesh", "service", t.name, "instance", st.instance, "error", err)
		return errMeshDenied
	case errors.Is(err, balancer.ErrNoInstances):
		return errNoInstance
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return errUpstreamTimeout
	default:
		return errBadGateway
	}
}

// upstreamRequest turns the client's request in ctx into the one to send upstream, in place, as a bare
// fasthttp proxy does (copying its headers and body into a request of its own cost a tenth of the gateway's
// user-space CPU): the client's method, path below the service's name and query, its headers but the
// hop-by-hop ones and the browser's cookies (the session cookie has become a bearer token; services do not
// read cookies), the request id, and who the client is (X-Forwarded-For: the address this front saw,
// replacing whatever the client sent, so nobody poses as another address). path must not lie in the
// request's own path, which it rewrites: the handler passes a slice of its copy. Whether the client asked to
// close its connection, fasthttp's server noted before the handler ran.
func (g *gateway) upstreamRequest(ctx *fasthttp.RequestCtx, path []byte, st *attemptState) {
	h := &ctx.Request.Header
	delHop(h, true)
	h.DelAllCookies()
	// The names are written in fasthttp's canonical form, so it need not normalise them per request.
	h.SetCanonical(headerForwardedHost, h.Host()) // before the host becomes the instance's
	h.SetCanonical(headerForwardedProto, valueHTTP)
	h.SetCanonical(headerRequestID, []byte(st.requestID))
	// SetCanonical replaces only the first header of a name: a client that sent X-Forwarded-For twice would keep
	// its second. Del drops them all (reordering other headers, so only when there are several).
	if len(h.PeekAll("X-Forwarded-For")) > 1 {
		h.Del("X-Forwarded-For")
	}
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		var buf [64]byte
		h.SetCanonical(headerForwardedFor, a.AddrPort().Addr().Unmap().AppendTo(buf[:0]))
	} else {
		h.Del("X-Forwarded-For")
	}
	ctx.URI().SetPathBytes(path) // written escaped on the request line; the query stays as the client sent it
}

// respond finishes the answer in ctx: hop-by-hop headers out (the request id goes in where every answer gets
// it), and which instance answered, for the metrics and the access log.
func respond(ctx *fasthttp.RequestCtx, st *attemptState, u *upstream) {
	delHop(&ctx.Response.Header, false)
	st.upstream = u
	st.upstreamStatus = ctx.Response.StatusCode()
}
