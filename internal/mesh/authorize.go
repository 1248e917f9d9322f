package mesh

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/web"
)

// DeniedHeader marks an answer refused by an intention on a connection that was allowed when it opened:
// callers treat it as "this service is unavailable to me", not as the service's own answer.
const DeniedHeader = "X-Shoplab-Mesh-Denied"

// Authorizer decides whether a caller may call target, by Consul's intentions as the local agent knows them.
// Decisions are cached for TTL per caller certificate, so a changed intention is followed within TTL (plus the
// agent's own update, milliseconds) while a busy caller costs one agent call per TTL. When the agent cannot
// be asked, the last decision for that caller stands; a caller never seen is refused.
type Authorizer struct {
	consul *api.Client
	target string
	ttl    time.Duration
	log    hclog.Logger

	mu    sync.Mutex
	cache map[string]decision // by client certificate URI and serial
}

type decision struct {
	allowed bool
	reason  string
	at      time.Time
}

// NewAuthorizer returns an authorizer for calls to target that asks the agent cc names (with a 2 s timeout
// on every call: a handshake never waits longer for it).
func NewAuthorizer(cc consulx.ClientConfig, target string, ttl time.Duration, log hclog.Logger) (*Authorizer, error) {
	cc.Timeout = 2 * time.Second
	client, err := consulx.NewClient(cc)
	if err != nil {
		return nil, err
	}
	return &Authorizer{consul: client, target: target, ttl: ttl, log: log.Named("mesh"), cache: map[string]decision{}}, nil
}

func (a *Authorizer) allow(cert *x509.Certificate, source string) (bool, string) {
	uri, ser := spiffeURI(cert), serial(cert)
	key := uri + "|" + ser
	a.mu.Lock()
	d, seen := a.cache[key]
	a.mu.Unlock()
	if seen && time.Since(d.at) < a.ttl {
		return d.allowed, d.reason
	}
	res, err := a.consul.Agent().ConnectAuthorize(&api.AgentAuthorizeParams{Target: a.target, ClientCertURI: uri, ClientCertSerial: ser})
	switch {
	case err != nil && seen:
		a.log.Warn("cannot ask the agent about intentions; keeping the last decision", "source", source, "target", a.target, "allowed", d.allowed, "error", err)
		return d.allowed, d.reason
	case err != nil:
		a.log.Warn("cannot ask the agent about intentions; refusing a caller not seen before", "source", source, "target", a.target, "error", err)
		return false, "intentions cannot be checked now"
	}
	next := decision{allowed: res.Authorized, reason: res.Reason, at: time.Now()}
	a.mu.Lock()
	if len(a.cache) > 10000 {
		a.cache = map[string]decision{}
	}
	a.cache[key] = next
	a.mu.Unlock()
	if !next.allowed && (!seen || d.allowed) {
		a.log.Warn("call refused by intention", "source", source, "target", a.target, "reason", res.Reason)
	} else if next.allowed && seen && !d.allowed {
		a.log.Info("calls allowed again by intention", "source", source, "target", a.target)
	}
	return next.allowed, next.reason
}

// Require re-checks every request of an open connection: an intention changed since the handshake is
// followed within TTL. A refused request gets 403 mesh_denied with DeniedHeader and the connection is closed.
// The caller's service is put in the request (Caller).
func (a *Authorizer) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			web.WriteErrorStatus(w, r, http.StatusForbidden, "mesh_denied", "this port takes mutual TLS from mesh services only")
			return
		}
		cert := r.TLS.PeerCertificates[0]
		uri := spiffeURI(cert)
		src, _ := serviceOfAnyDomain(uri)
		if ok, reason := a.allow(cert, src); !ok {
			w.Header().Set(DeniedHeader, "true")
			w.Header().Set("Connection", "close")
			web.WriteErrorStatus(w, r, http.StatusForbidden, "mesh_denied", src+" may not call "+a.target+": "+reason)
			return
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), src)))
	})
}

type callerKey struct{}

func withCaller(ctx context.Context, service string) context.Context {
	return context.WithValue(ctx, callerKey{}, service)
}

// WithCaller returns ctx as a request from service arrives with it (for tests of handlers).
func WithCaller(ctx context.Context, service string) context.Context { return withCaller(ctx, service) }

// Caller is the mesh service that sent the request ("" outside the mesh).
func Caller(r *http.Request) string {
	s, _ := r.Context().Value(callerKey{}).(string)
	return s
}

// serviceOfAnyDomain reads the service of a SPIFFE id whose chain was already verified at the handshake.
func serviceOfAnyDomain(uri string) (string, bool) {
	host, _, _ := strings.Cut(strings.TrimPrefix(uri, "spiffe://"), "/")
	return ServiceOf(uri, host)
}

// RequireCaller lets only the named mesh services through to an internal route: every other caller — one the
// intentions allow to call this service for other routes (the front may call catalog) — gets 403 forbidden with
// the error body. It runs behind Require, which proved who the caller is.
func RequireCaller(callers ...string) func(http.Handler) http.Handler {
	allowed := strings.Join(callers, ", ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !slices.Contains(callers, Caller(r)) {
				web.WriteErrorStatus(w, r, http.StatusForbidden, "forbidden", "this internal route answers "+allowed+" only")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
