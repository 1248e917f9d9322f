// Package health serves /health/live and /health/ready with a JSON body naming each check.
package health

import (
	"context"
	"errors"
	"net/http"
	"time"

	"shoplab/internal/web"
)

// Check is one named readiness check. Run returns nil when healthy, an error wrapped by Degraded when the
// service still serves but with reduced guarantees, or any other error when it cannot serve.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

type degraded struct{ err error }

func (d degraded) Error() string { return d.err.Error() }
func (d degraded) Unwrap() error { return d.err }

// Degraded marks err as a warning: readiness stays 200 and the check reports "warn".
func Degraded(err error) error { return degraded{err} }

// Result is one check's outcome in the JSON body.
type Result struct {
	Status string `json:"status"` // pass, warn or fail
	Error  string `json:"error,omitempty"`
}

// Report is the JSON body of both endpoints.
type Report struct {
	Status string            `json:"status"`
	Checks map[string]Result `json:"checks,omitempty"`
}

// Live answers 200 while the process serves HTTP.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusOK, Report{Status: "pass"})
	})
}

// Ready runs every check (each bounded by timeout) and answers 200 when none fails, else 503.
func Ready(timeout time.Duration, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := Run(r.Context(), timeout, checks...)
		status := http.StatusOK
		if rep.Status == "fail" {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		web.WriteJSON(w, status, rep)
	})
}

// Run runs the checks and summarises them.
func Run(ctx context.Context, timeout time.Duration, checks ...Check) Report {
	rep := Report{Status: "pass", Checks: make(map[string]Result, len(checks))}
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.Run(cctx)
		cancel()
		var d degraded
		switch {
		case err == nil:
			rep.Checks[c.Name] = Result{Status: "pass"}
		case errors.As(err, &d):
			rep.Checks[c.Name] = Result{Status: "warn", Error: err.Error()}
			if rep.Status == "pass" {
				rep.Status = "warn"
			}
		default:
			rep.Checks[c.Name] = Result{Status: "fail", Error: err.Error()}
			rep.Status = "fail"
		}
	}
	return rep
}
