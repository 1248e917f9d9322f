package main

import (
	"io"
	"net/http"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"shoplab/internal/app"
	"shoplab/internal/health"
	"shoplab/internal/metrics"
)

// routes is the front's whole HTTP surface. The gateway, /api/{service}/{path:.*} (apiRoute), is the hot path
// and runs on fasthttp (handle_api.go): it forwards forwardedMethods, answers any other method 405. Everything
// else — the browser session, the status page, the storefront — is this net/http router, behind fasthttp's
// adaptor. Health and metrics (with instance ids and Consul's errors) are served on the operations port alone
// (ops, which app.Serve runs there), never on the public one: 404 there.
func routes(log hclog.Logger, logOut io.Writer, g *gateway, s *sessions, reg *metrics.Registry, checks []health.Check) (api, rest fasthttp.RequestHandler, ops http.Handler) {
	r := app.NewRouter(log, reg, checks)

	r.Handle("/session", handleSession(log, s)).Methods(http.MethodGet)
	r.Handle("/session", handleLogin(log, s)).Methods(http.MethodPost)
	r.Handle("/session", handleLogout(log, s)).Methods(http.MethodDelete)

	r.Handle("/status", staticPage("status.html")).Methods(http.MethodGet)
	r.Handle("/status.json", handleStatusJSON(log, g)).Methods(http.MethodGet)
	r.PathPrefix("/static/").Handler(staticFiles()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/", staticPage("index.html")).Methods(http.MethodGet)

	ops = r.Handler(securityHeaders)
	return newAPIHandler(log, logOut, g, s, reg).serve, fasthttpadaptor.NewFastHTTPHandler(app.APIOnly(ops)), ops
}
