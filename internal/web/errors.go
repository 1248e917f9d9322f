// Package web holds the HTTP plumbing every shoplab service shares: the error body of API.md, strict JSON
// decoding, request ids, access logs, panic recovery, body limits and the server lifecycle.
package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Error is an error that knows the HTTP status and machine-readable code it answers with.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration  // when set, the answer carries Retry-After (whole seconds, at least 1)
	Cause      error          // when set, logged (as a warning) but never sent
	Extra      map[string]any // more top-level fields of the body beside "error" (a declined payment's "payment")
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an *Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 invalid_request naming the problem.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "invalid_request", format, args...)
}

// NotFound is a 404 not_found.
func NotFound(what string) *Error {
	return Errorf(http.StatusNotFound, "not_found", "%s not found", what)
}

// errorDetail is the "error" object of every error answer (API.md "Errors").
type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// Body is the error's answer body for the request requestID, encoded with its trailing newline:
// {"error": {"code", "message", "request_id"}} and the Extra fields beside it.
func (e *Error) Body(requestID string) []byte {
	body := make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		body[k] = v
	}
	body["error"] = errorDetail{Code: e.Code, Message: e.Message, RequestID: requestID}
	b, err := json.Marshal(body)
	if err != nil {
		return []byte(`{"error":{"code":"internal_error","message":"internal error","request_id":""}}` + "\n")
	}
	return append(b, '\n')
}

// DatabaseUnavailable is the answer of a service whose database cannot serve for want of a primary (a failover;
// pgdb.Unavailable): 503 database_unavailable with Retry-After. The one mapping every service with a
// database applies, in its errors.go.
func DatabaseUnavailable(cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: "database_unavailable",
		Message: "the database is unavailable right now (a failover, say); try again shortly", RetryAfter: time.Second, Cause: cause}
}

// WriteError answers with err. An *Error (anywhere in the chain) is answered as it says; anything else is a 500
// whose details go to the log, never to the client.
func WriteError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	var we *Error
	if !errors.As(err, &we) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			we = Errorf(http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", mbe.Limit)
		} else {
			log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()), "error", err)
			we = Errorf(http.StatusInternalServerError, "internal_error", "internal error")
		}
	}
	if we.Cause != nil {
		log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()), "status", we.Status, "error", we.Cause)
	}
	if we.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(we.RetryAfter.Round(time.Second)/time.Second))))
	}
	Answer{Status: we.Status, Body: we.Body(RequestID(r.Context()))}.Write(w)
}

// ErrorJSON is the API.md error body, encoded, with its trailing newline (for servers other than net/http).
func ErrorJSON(code, message, requestID string) []byte {
	return (&Error{Code: code, Message: message}).Body(requestID)
}

// WriteErrorStatus writes the API.md error body with the given status, code and message.
func WriteErrorStatus(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	Answer{Status: status, Body: ErrorJSON(code, message, RequestID(r.Context()))}.Write(w)
}

// Answer is a JSON answer made in advance: an idempotent request's stored answer, given again to its repeats.
type Answer struct {
	Status int
	Body   []byte
}

// Write sends the answer.
func (a Answer) Write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// WriteJSON writes v as a JSON answer with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal_error","message":"internal error","request_id":""}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// NotFoundHandler answers unknown routes with the API.md error body.
func NotFoundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteErrorStatus(w, r, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

// MethodNotAllowedHandler answers a known path with the wrong method.
func MethodNotAllowedHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteErrorStatus(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" not allowed on "+r.URL.Path)
	})
}
