package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/web"
)

// engine is the front's HTTP server: fasthttp, with /api/ on the gateway's own handler and every other path
// (storefront, session, status, health, metrics) on the net/http handler of routes.go, through fasthttp's
// adaptor. It is what app.Serve runs (web.Engine).
type engine struct {
	srv   *fasthttp.Server
	yield bool // clients' connections step aside before reading the next request (yieldconn.go)
}

// newEngine serves api for /api/… and rest for the rest. writeTimeout bounds writing an answer.
func newEngine(api fasthttp.RequestHandler, rest fasthttp.RequestHandler, log hclog.Logger, writeTimeout time.Duration) *engine {
	log = log.Named("http")
	return &engine{srv: &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if bytes.HasPrefix(ctx.Path(), apiPrefix) {
				api(ctx)
				return
			}
			rest(ctx)
		},
		ErrorHandler:          func(ctx *fasthttp.RequestCtx, err error) { serverError(ctx, err) },
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          writeTimeout,
		IdleTimeout:           120 * time.Second,
		MaxRequestBodySize:    web.DefaultBodyLimit,
		ReadBufferSize:        16 << 10, // the largest request head accepted (431 beyond)
		CloseOnShutdown:       true,
		Logger:                fastLogger{log},
	}}
}

// serverError answers a request fasthttp could not read, with the error body.
func serverError(ctx *fasthttp.RequestCtx, err error) {
	status, code, msg := http.StatusBadRequest, "invalid_request", "the request could not be read"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, code, msg = http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds 1048576 bytes"
	case errors.As(err, &small):
		status, code, msg = http.StatusRequestHeaderFieldsTooLarge, "headers_too_large", "the request's headers are too large"
	}
	id := web.NewRequestID()
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set(web.RequestIDHeader, id)
	ctx.SetBody(web.ErrorJSON(code, msg, id))
}

func (e *engine) Serve(ln net.Listener) error {
	if e.yield {
		ln = yieldListener{ln}
	}
	return e.srv.Serve(ln)
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
