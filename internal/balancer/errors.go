package balancer

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/valyala/fasthttp"

	"shoplab/internal/mesh"
)

// The errors of both clients are classified here, net/http's (svcclient) and fasthttp's (the front's gateway):
// what a failure says about the instance decides whether it is ejected and whether the request may go
// elsewhere.

// ErrDenied is an answer the mesh refused (mesh.DeniedHeader): no intention allows the caller.
var ErrDenied = errors.New("refused by the service mesh: no intention allows this call")

// Refused reports whether the mesh refused the call — an answer marked denied, or the TLS handshake refused
// by the instance (mesh.IsRefused). An intention is about the service, not one instance: nothing is ejected,
// nothing is tried elsewhere.
func Refused(err error) bool { return errors.Is(err, ErrDenied) || mesh.IsRefused(err) }

// NotSent reports whether err happened before the request reached the instance (the connection could not be
// made), so even a request that may not be repeated can go elsewhere.
func NotSent(err error) bool {
	var op *net.OpError
	return (errors.As(err, &op) && op.Op == "dial") || errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, syscall.ECONNREFUSED)
}

// ConnFailure reports whether err means the instance refused, reset or dropped the connection, or its host
// stopped acknowledging what was sent (ETIMEDOUT, from a TCP user timeout): grounds for ejecting it. The
// caller's own timeouts are not: a slow instance is not a dead one.
func ConnFailure(err error) bool {
	if NotSent(err) {
		return true
	}
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, fasthttp.ErrConnectionClosed)
}
