package consulx

import (
	"net/http"
	"strings"
)

// Meta keys of a service's retry policy.
const (
	MetaRetryMethods = "retry_methods" // "GET,HEAD,PUT,DELETE"
	MetaRetryKeyed   = "retry_keyed"   // "POST /v1/orders,POST /v1/products/*/stock-adjustments"
	MetaRetryRoutes  = "retry_routes"  // "POST /v1/orders/*/cancel"
)

// RetryPolicy is what a service says about its own API: which requests are safe to send a second time (to
// another instance) because the service applies them once however often they arrive. A gateway retries only
// these. It travels as service meta in Consul, so the service that implements the guarantee is the one that
// states it.
type RetryPolicy struct {
	Methods []string // every request with one of these methods
	Keyed   []string // "METHOD /path" (a * matches one segment): when the request carries an Idempotency-Key
	Routes  []string // "METHOD /path": always
}

// Meta encodes the policy as service meta.
func (p RetryPolicy) Meta() map[string]string {
	m := map[string]string{}
	if len(p.Methods) > 0 {
		m[MetaRetryMethods] = strings.Join(p.Methods, ",")
	}
	if len(p.Keyed) > 0 {
		m[MetaRetryKeyed] = strings.Join(p.Keyed, ",")
	}
	if len(p.Routes) > 0 {
		m[MetaRetryRoutes] = strings.Join(p.Routes, ",")
	}
	return m
}

// RetryPolicyFromMeta reads the policy an instance registered. Without one, only GET and HEAD are retried.
func RetryPolicyFromMeta(meta map[string]string) RetryPolicy {
	split := func(s string) []string {
		var out []string
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		return out
	}
	p := RetryPolicy{Methods: split(meta[MetaRetryMethods]), Keyed: split(meta[MetaRetryKeyed]), Routes: split(meta[MetaRetryRoutes])}
	if p.Methods == nil && p.Keyed == nil && p.Routes == nil {
		p.Methods = []string{http.MethodGet, http.MethodHead}
	}
	return p
}

// Allows reports whether a request may be sent again; keyed says whether it carries an Idempotency-Key.
func (p RetryPolicy) Allows(method, path string, keyed bool) bool {
	for _, m := range p.Methods {
		if m == method {
			return true
		}
	}
	for _, r := range p.Routes {
		if routeMatches(r, method, path) {
			return true
		}
	}
	if !keyed {
		return false
	}
	for _, r := range p.Keyed {
		if routeMatches(r, method, path) {
			return true
		}
	}
	return false
}

// routeMatches matches "METHOD /a/*/c" against a request: the method exactly, the path segment by segment,
// a * standing for any one non-empty segment.
func routeMatches(route, method, path string) bool {
	m, pattern, ok := strings.Cut(route, " ")
	if !ok || m != method {
		return false
	}
	for {
		pseg, prest, pmore := strings.Cut(strings.TrimPrefix(pattern, "/"), "/")
		rseg, rrest, rmore := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		if pseg != rseg && (pseg != "*" || rseg == "") {
			return false
		}
		if !pmore || !rmore {
			return pmore == rmore
		}
		pattern, path = prest, rrest
	}
}
