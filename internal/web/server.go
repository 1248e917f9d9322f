package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
)

// NewServer returns an http.Server for h with timeouts that keep a slow or stuck client from holding a
// connection for ever.
func NewServer(h http.Handler, log hclog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
}

// Engine is an HTTP server: net/http's *http.Server, or another engine behind the same three calls (the
// front's gateway serves with fasthttp).
type Engine interface {
	Serve(ln net.Listener) error        // serves until Shutdown or Close; then http.ErrServerClosed or nil
	Shutdown(ctx context.Context) error // stops accepting, waits for in-flight requests until ctx ends
	Close() error                       // closes every connection now
}

// Serve serves srv on ln until ctx ends. Then it shuts down in the order API consumers need: first
// beforeDrain (deregister from Consul, so no new traffic is sent here), then it drains in-flight requests for up
// to drain, then it returns. A listener failure returns at once, also after running beforeDrain.
func Serve(ctx context.Context, log hclog.Logger, srv Engine, ln net.Listener, drain time.Duration, beforeDrain func(context.Context)) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx))
	case serveErr = <-errc:
		log.Error("server stopped", "error", serveErr)
	}

	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if beforeDrain != nil {
		beforeDrain(stopCtx)
	}
	if serveErr != nil {
		return serveErr
	}
	if err := srv.Shutdown(stopCtx); err != nil {
		log.Warn("drain did not finish; closing remaining connections", "error", err)
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}
