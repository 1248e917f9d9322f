package main

import (
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// routes is the front's whole HTTP surface. The gateway, /api/{service}/{path:.*} (apiRoute), is the hot path
// and runs on fasthttp (handle_api.go): it forwards forwardedMethods, answers any other method 405. Everything
// else — the browser session, the status page, the storefront, health and metrics — is this net/http router,
// behind fasthttp's adaptor.
func routes(log hclog.Logger, logOut io.Writer, g *gateway, s *sessions, reg *metrics.Registry, checks []health.Check) (api, rest fasthttp.RequestHandler) {
	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))

	r.Handle("/session", handleSession(log, s)).Methods(http.MethodGet)
	r.Handle("/session", handleLogin(log, s)).Methods(http.MethodPost)
	r.Handle("/session", handleLogout(log, s)).Methods(http.MethodDelete)

	r.Handle("/status", staticPage("status.html")).Methods(http.MethodGet)
	r.Handle("/status.json", handleStatusJSON(log, g)).Methods(http.MethodGet)
	r.PathPrefix("/static/").Handler(staticFiles()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/", staticPage("index.html")).Methods(http.MethodGet)

	r.Handle("/health/live", health.Live()).Methods(http.MethodGet)
	r.Handle("/health/ready", health.Ready(2*time.Second, checks...)).Methods(http.MethodGet)
	r.Handle("/metrics", reg.Handler()).Methods(http.MethodGet)

	return newAPIHandler(log, logOut, g, s, reg).serve,
		fasthttpadaptor.NewFastHTTPHandler(web.Handler(securityHeaders(r), web.Options{Log: log, Observe: reg.ObserveHTTP}))
}

func routeTemplate(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		t, _ := rt.GetPathTemplate()
		return t
	}
	return ""
}
