package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// apiPrefix is where the gateway's routes begin.
var apiPrefix = []byte("/api/")

// apiRoute is the gateway's route template, the label of its metrics and access-log lines.
const apiRoute = "/api/{service}/{path:.*}"

// forwardedMethods are the methods the gateway forwards; any other is 405 here.
var forwardedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// apiHandler serves /api/{service}/{path}: the gateway's hot path, on fasthttp. It does what the middleware of
// every other route does (request id, security headers, access log, metrics with bounded labels) itself, so
// a proxied request costs no conversion to net/http.
type apiHandler struct {
	log       hclog.Logger
	access    *accessLog
	g         *gateway
	s         *sessions
	routes    map[string]methodRoute // by method
	unmatched *metrics.Route
}

// methodRoute is the gateway's route for one forwarded method, its strings made once rather than per request.
type methodRoute struct {
	method  string
	name    string // "GET /api/{service}/{path:.*}": the metrics label and the access log's route
	metrics *metrics.Route
}

// newAPIHandler logs to log; logOut is the writer beneath it in the text format (nil in JSON), where the access
// log writes its lines itself.
func newAPIHandler(log hclog.Logger, logOut io.Writer, g *gateway, s *sessions, reg *metrics.Registry) *apiHandler {
	access := log.Named("http")
	a := &apiHandler{log: log, access: newAccessLog(access, logOut, access.Name()), g: g, s: s, routes: map[string]methodRoute{}, unmatched: reg.Route("unmatched")}
	for _, m := range forwardedMethods {
		name := m + " " + apiRoute
		a.routes[m] = methodRoute{method: m, name: name, metrics: reg.Route(name)}
	}
	return a
}

// blockedPrefix reports paths the front never routes: services' internal endpoints, their metrics and their
// health endpoints (whose failures name internal details; operators read them in Consul).
func blockedPrefix(path []byte) bool {
	for _, p := range [][]byte{[]byte("/internal"), []byte("/metrics"), []byte("/health")} {
		if bytes.Equal(path, p) || (bytes.HasPrefix(path, p) && len(path) > len(p) && path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// requestIDOf is the client's X-Request-ID when it is a valid one, else a new id.
func requestIDOf(ctx *fasthttp.RequestCtx) string {
	if id := ctx.Request.Header.Peek(web.RequestIDHeader); len(id) > 0 && web.ValidRequestID(string(id)) {
		return string(id)
	}
	return web.NewRequestID()
}

func (a *apiHandler) serve(ctx *fasthttp.RequestCtx) {
	// The clock is read twice per request, here and at the end: deadlines, metrics, the status page's plots
	// and the access log all work from these two readings.
	st := attemptState{start: time.Now(), requestID: requestIDOf(ctx)}
	// The client's path, copied: forwarding rewrites the request's own into the upstream one.
	clientPath := bytes.Clone(ctx.Path())
	requestClock.set(st.start)
	route, routeName, service := a.unmatched, "unmatched", ""
	err := a.handle(ctx, clientPath, &st, &route, &routeName, &service)
	if err != nil {
		a.writeError(ctx, err, service, st.requestID, clientPath)
	}
	h := &ctx.Response.Header
	h.Set(web.RequestIDHeader, st.requestID)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	end := time.Now()
	status, took := ctx.Response.StatusCode(), end.Sub(st.start)
	route.Observe(status, took)
	if st.upstream != nil {
		st.upstream.obs.observe(st.upstreamStatus, took)
	}
	if st.target != nil {
		st.target.traffic.record(end, status, took)
	}
	if a.access.enabled() {
		e := accessEntry{method: ctx.Method(), path: clientPath, route: routeName, status: status, took: took,
			bytes: len(ctx.Response.Body()), requestID: st.requestID, service: service, upstream: st.instance,
			upstreamStatus: st.upstreamStatus, retries: st.retries}
		if st.err != nil {
			e.err = st.err.Error()
		}
		a.access.write(end, &e)
	}
}

// handle routes the request in ctx, whose path clientPath is a copy of (forward rewrites the request's own).
func (a *apiHandler) handle(ctx *fasthttp.RequestCtx, clientPath []byte, st *attemptState, route **metrics.Route, routeName, service *string) error {
	r, forwarded := a.routes[string(ctx.Method())]
	if !forwarded {
		return web.Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "method %s not allowed on %s", ctx.Method(), ctx.Path())
	}
	method := r.method
	rest := clientPath[len(apiPrefix):]
	i := bytes.IndexByte(rest, '/')
	if i <= 0 {
		return web.Errorf(http.StatusNotFound, "not_found", "no such endpoint: %s %s", method, ctx.Path())
	}
	*route, *routeName, *service = r.metrics, r.name, a.g.serviceName(rest[:i])
	path := rest[i:]
	if blockedPrefix(path) {
		return web.Errorf(http.StatusNotFound, "not_found", "no such endpoint: %s %s", method, ctx.Path())
	}
	t, err := a.g.target(*service)
	if err != nil {
		return err
	}
	st.target = t
	if err := a.s.authorize(&ctx.Request.Header, method); err != nil {
		return err
	}
	return a.g.forward(ctx, t, method, path, st)
}

// writeError answers with the front's own error body (API.md).
func (a *apiHandler) writeError(ctx *fasthttp.RequestCtx, err error, service, requestID string, path []byte) {
	var we *web.Error
	if !errors.As(err, &we) {
		we = gatewayError(err, service)
	}
	if we == nil {
		a.log.Error("request failed", "method", string(ctx.Method()), "path", string(path), "request_id", requestID, "error", err)
		we = web.Errorf(http.StatusInternalServerError, "internal_error", "internal error")
	}
	ctx.Response.Reset()
	ctx.SetStatusCode(we.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(web.ErrorJSON(we.Code, we.Message, requestID))
}
