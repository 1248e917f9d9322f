package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/web"
)

// engine is the front's HTTP server: fasthttp, with /api/ on the gateway's own handler and every other path
// (storefront, session, status, health, metrics) on the net/http handler of routes.go, through fasthttp's
// adaptor. It is what app.Serve runs (web.Engine). What it holds for its clients is bounded (conns.go).
type engine struct {
	srv    *fasthttp.Server
	limits *connLimits
	bodies *bodyBudget
	yield  bool // clients' connections step aside before reading the next request (yieldconn.go)
}

// serverLimits are the engine's bounds on what clients may hold (FRONT_MAX_CONNS, FRONT_MAX_CONNS_PER_ADDR,
// FRONT_BODY_MEMORY), and how long a request may take to arrive.
type serverLimits struct {
	conns, connsPerAddr int
	bodyMemory          int64         // bytes of request bodies held at once past the first bodyPrefetch of each
	bodyWait            time.Duration // how long a body waits for bodyMemory before 503
	head                time.Duration // to send a request's head (or, on a new connection, its first byte)
	body                time.Duration // to send its body, from the end of its head
	idle                time.Duration // a kept-alive connection's wait for its next request
}

// defaultServerLimits: a front on its 384 MiB VM holds at most about 70 MiB for its clients (docs/benchmarks.md,
// "The front under many connections").
var defaultServerLimits = serverLimits{conns: 1024, connsPerAddr: 256, bodyMemory: 32 << 20, bodyWait: time.Second,
	head: 10 * time.Second, body: 30 * time.Second, idle: 120 * time.Second}

// bodyPrefetch is how much of a body fasthttp reads with the head (its streaming read): a body no larger is
// already held, and takes nothing of the body budget.
const bodyPrefetch = 8 << 10

// newEngine serves api for /api/… and rest for the rest. writeTimeout bounds writing an answer.
func newEngine(api fasthttp.RequestHandler, rest fasthttp.RequestHandler, log hclog.Logger, writeTimeout time.Duration, lim serverLimits) *engine {
	log = log.Named("http")
	e := &engine{limits: newConnLimits(lim.conns, lim.connsPerAddr), bodies: newBodyBudget(lim.bodyMemory, lim.bodyWait)}
	e.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			release, ok := e.readBody(ctx)
			if !ok {
				return
			}
			defer release()
			if bytes.HasPrefix(ctx.Path(), apiPrefix) {
				api(ctx)
				return
			}
			rest(ctx)
		},
		// A body is read by the handler (readBody), within the body budget, not allocated whole from its
		// declared length before anything of it arrived.
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() != 0 && h.ContentLength() != -2 {
				return fasthttp.RequestConfig{ReadTimeout: lim.body}
			}
			return fasthttp.RequestConfig{}
		},
		ErrorHandler:          func(ctx *fasthttp.RequestCtx, err error) { serverError(ctx, err) },
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           lim.head,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           lim.idle,
		Concurrency:           lim.conns + maxRefusing, // a backstop: the listener admits at most lim.conns
		MaxRequestBodySize:    web.DefaultBodyLimit,
		ReadBufferSize:        16 << 10, // the largest request head accepted (431 beyond)
		CloseOnShutdown:       true,
		Logger:                fastLogger{log},
	}
	return e
}

// readBody reads the request's body (if it has one past what came with its head) into memory before the request
// is routed, so the gateway can send it again on a retry. A body larger than bodyPrefetch first takes its size
// from the body budget, given back by release once the request is answered. When it cannot be read, ctx holds
// the answer, the connection is closed after it (lingering, so the client reads it), and ok is false.
func (e *engine) readBody(ctx *fasthttp.RequestCtx) (release func(), ok bool) {
	release = func() {}
	req := &ctx.Request
	if !req.IsBodyStream() {
		return release, true
	}
	n := req.Header.ContentLength() // -1: chunked
	if n > web.DefaultBodyLimit {
		bodyError(ctx, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", web.DefaultBodyLimit))
		return release, false
	}
	if n < 0 || n > bodyPrefetch {
		need := int64(n)
		if n < 0 {
			need = web.DefaultBodyLimit
		}
		r, err := e.bodies.take(ctx, need)
		if err != nil {
			bodyError(ctx, http.StatusServiceUnavailable, "busy", "the front is reading as many request bodies as it may; try again shortly")
			ctx.Response.Header.Set("Retry-After", "1")
			return release, false
		}
		release = r
	}
	buf := make([]byte, 0, max(n, 0)+1) // one byte more, so a full body needs no growing to see its end
	buf, err := readAtMost(buf, req.BodyStream(), web.DefaultBodyLimit)
	var ne net.Error
	switch {
	case errors.Is(err, errBodyTooLarge) || errors.Is(err, fasthttp.ErrBodyTooLarge):
		bodyError(ctx, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", web.DefaultBodyLimit))
	case errors.As(err, &ne) && ne.Timeout():
		bodyError(ctx, http.StatusRequestTimeout, "request_timeout", "the request's body did not arrive in time")
	case err != nil:
		bodyError(ctx, http.StatusBadRequest, "invalid_request", "the request's body could not be read")
	default:
		req.SetBodyRaw(buf)
		req.Header.SetContentLength(len(buf)) // sent on with its length, also when it came chunked
		return release, true
	}
	release()
	return func() {}, false
}

// errBodyTooLarge: a body longer than the limit readAtMost was given.
var errBodyTooLarge = errors.New("request body too large")

// readAtMost appends r's content to buf until its end, or fails with errBodyTooLarge once more than limit bytes
// came. buf grows only as bytes arrive.
func readAtMost(buf []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errBodyTooLarge
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyError answers a request whose body the front does not read, and closes its connection after the answer,
// lingering so that a client still sending it reads the answer instead of a reset.
func bodyError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	writeError(ctx, status, code, msg)
	ctx.SetConnectionClose()
	lingerOnClose(ctx.Conn())
}

// serverError answers a request fasthttp could not read, with the error body. fasthttp closes the connection
// after it; the client may still be sending, so it lingers.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	status, code, msg := http.StatusBadRequest, "invalid_request", "the request could not be read"
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code, msg = http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", web.DefaultBodyLimit)
	case errors.As(err, &small):
		status, code, msg = http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "the request's headers are too large"
	case errors.As(err, &ne) && ne.Timeout():
		status, code, msg = http.StatusRequestTimeout, "request_timeout", "the request did not arrive in time"
	}
	writeError(ctx, status, code, msg)
	lingerOnClose(ctx.Conn())
}

// writeError puts the error body, with a new request id, in ctx's response.
func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	id := web.NewRequestID()
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set(web.RequestIDHeader, id)
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetBody(web.ErrorJSON(code, msg, id))
}

func (e *engine) Serve(ln net.Listener) error {
	return e.srv.Serve(newClientListener(ln, e.limits, e.yield))
}

// Shutdown stops accepting, closes idle connections and waits for requests in flight until ctx ends.
func (e *engine) Shutdown(ctx context.Context) error { return e.srv.ShutdownWithContext(ctx) }

// Close stops at once.
func (e *engine) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.srv.ShutdownWithContext(ctx)
	return nil
}

// fastLogger sends fasthttp's own messages to hclog.
type fastLogger struct{ log hclog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp", "message", fmt.Sprintf(format, args...))
}
