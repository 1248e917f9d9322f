package app

import (
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/health"
	"shoplab/internal/metrics"
	"shoplab/internal/web"
)

// Router is a service's gorilla/mux router holding what every service answers besides its own API: the error
// body for an unknown path or method, route templates (never raw paths) as metric labels, /health/live,
// /health/ready (its checks, 2 s each at most) and /metrics. A service's routes.go adds its API with Handle and
// returns Handler.
type Router struct {
	*mux.Router
	log hclog.Logger
	reg *metrics.Registry
}

// NewRouter starts a service's routes.
func NewRouter(log hclog.Logger, reg *metrics.Registry, checks []health.Check) *Router {
	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFoundHandler()
	r.MethodNotAllowedHandler = web.MethodNotAllowedHandler()
	r.Use(web.LabelRoutes(routeTemplate))
	r.Handle("/health/live", health.Live()).Methods(http.MethodGet)
	r.Handle("/health/ready", health.Ready(2*time.Second, checks...)).Methods(http.MethodGet)
	r.Handle("/metrics", reg.Handler()).Methods(http.MethodGet)
	return &Router{Router: r, log: log, reg: reg}
}

// Handler is the service's whole HTTP handler: the routes inside wrap (the first outermost), inside web's
// middleware (access log, request metrics, request ids, panics answered 500).
func (r *Router) Handler(wrap ...func(http.Handler) http.Handler) http.Handler {
	var h http.Handler = r.Router
	for i := len(wrap) - 1; i >= 0; i-- {
		h = wrap[i](h)
	}
	return web.Handler(h, web.Options{Log: r.log, Observe: r.reg.ObserveHTTP})
}

// PathVar reads the path variable name of the route that matched a request.
func PathVar(name string) func(*http.Request) string {
	return func(r *http.Request) string { return mux.Vars(r)[name] }
}

// routeTemplate is the matched route's template, the label of its metrics.
func routeTemplate(r *http.Request) string {
	if rt := mux.CurrentRoute(r); rt != nil {
		t, _ := rt.GetPathTemplate()
		return t
	}
	return ""
}
