package balancer

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
)

// NotSent reports whether err happened before the request reached the instance (the connection could not be
// made), so even a non-idempotent request may be sent elsewhere.
func NotSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ConnFailure reports whether err means the instance refused, reset or dropped the connection, or its host
// stopped acknowledging what was sent (ETIMEDOUT, from a TCP user timeout): grounds for ejecting it. The
// caller's own timeouts are not: a slow instance is not a dead one.
func ConnFailure(err error) bool {
	if NotSent(err) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Idempotent reports whether a request may be sent twice: GET, HEAD, OPTIONS, PUT, DELETE, or any request
// that carries an Idempotency-Key.
func Idempotent(method string, h http.Header) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return h.Get("Idempotency-Key") != ""
}
