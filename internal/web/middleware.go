package web

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultBodyLimit is the largest request body a service reads unless told otherwise (1 MiB).
const DefaultBodyLimit = 1 << 20

// RequestIDHeader carries the request id between clients, the front and the services.
const RequestIDHeader = "X-Request-ID"

type ctxKey int

const (
	requestIDKey ctxKey = iota
	routeKey
)

// RequestID returns the request id of ctx, or "" outside a request.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithRequestID returns a context that carries id, so outgoing calls can pass it on.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// NewRequestID returns a fresh random request id: 26 base32 characters (128 random bits). Request ids need to
// be unique, not secret, so the runtime's fast generator serves (crypto/rand showed up in the gateway profile).
func NewRequestID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var b [26]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := range 13 {
		b[i] = alphabet[hi&31]
		b[13+i] = alphabet[lo&31]
		hi >>= 5
		lo >>= 5
	}
	return string(b[:])
}

// ValidRequestID accepts what a client may send as its own request id: 1–128 characters of [A-Za-z0-9._:-].
func ValidRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// Options configures Handler.
type Options struct {
	// Log receives the access log (named "http") and recovered panics.
	Log hclog.Logger
	// BodyLimit caps request bodies; 0 means DefaultBodyLimit, a negative value means no limit.
	BodyLimit int64
	// Observe, if set, is told of every finished request (metrics).
	Observe func(r *http.Request, route string, status int, took time.Duration)
	// Quiet lists path prefixes whose access log lines go to debug level (health checks, metrics scrapes).
	Quiet []string
}

// Handler wraps h with the middleware every service uses, outermost first: request id, panic recovery, access
// log and metrics, body limit.
func Handler(h http.Handler, o Options) http.Handler {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	limit := o.BodyLimit
	if limit == 0 {
		limit = DefaultBodyLimit
	}
	if o.Quiet == nil {
		o.Quiet = []string{"/health/", "/metrics"}
	}
	log := o.Log.Named("http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !ValidRequestID(id) {
			id = NewRequestID()
		}
		w.Header().Set(RequestIDHeader, id)
		route := &requestInfo{name: "unmatched"}
		ctx := context.WithValue(WithRequestID(r.Context(), id), routeKey, route)
		r = r.WithContext(ctx)
		rec := &Recorder{ResponseWriter: w}

		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "request_id", id,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if !rec.WroteHeader() {
					WriteErrorStatus(rec, r, http.StatusInternalServerError, "internal_error", "internal error")
				}
			}
			took := time.Since(start)
			status := rec.Status()
			if o.Observe != nil {
				o.Observe(r, route.name, status, took)
			}
			logf, enabled := log.Info, log.IsInfo()
			for _, q := range o.Quiet {
				if strings.HasPrefix(r.URL.Path, q) {
					logf, enabled = log.Debug, log.IsDebug()
				}
			}
			if !enabled {
				return
			}
			logf("request", append([]any{"method", r.Method, "path", r.URL.Path, "route", route.name, "status", status,
				"duration_ms", float64(took.Microseconds()) / 1000, "bytes", rec.Bytes(), "request_id", id}, route.fields...)...)
		}()

		if limit > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(rec, r.Body, limit)
		}
		h.ServeHTTP(rec, r)
	})
}

// requestInfo is what the handlers tell the access log about a request.
type requestInfo struct {
	name   string
	fields []any
}

// LogFields adds key/value pairs to the request's access-log line.
func LogFields(r *http.Request, kv ...any) {
	if info, ok := r.Context().Value(routeKey).(*requestInfo); ok {
		info.fields = append(info.fields, kv...)
	}
}

// LabelRoutes returns middleware (for a router's Use) that names the matched route, so metrics and access logs
// count requests per route template rather than per raw path.
func LabelRoutes(template func(*http.Request) string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if l, ok := r.Context().Value(routeKey).(*requestInfo); ok {
				if name := template(r); name != "" {
					l.name = MethodLabel(r.Method) + " " + name
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// MethodLabel bounds a request method to a closed set for metric labels and route names: the methods HTTP
// defines keep their name, anything a client made up is "other". Client-chosen strings never become labels.
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// Recorder is a ResponseWriter that remembers the status and the number of bytes written.
type Recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// WriteHeader records the status.
func (r *Recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

// Write records the bytes.
func (r *Recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Flush passes a flush on, for streaming answers.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		if r.status == 0 {
			r.status = http.StatusOK
		}
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Status is the status written so far (200 if the handler wrote a body without a status, 0 if nothing yet).
func (r *Recorder) Status() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// WroteHeader tells whether the status line has gone out.
func (r *Recorder) WroteHeader() bool { return r.status != 0 }

// Bytes is the number of body bytes written.
func (r *Recorder) Bytes() int64 { return r.bytes }
