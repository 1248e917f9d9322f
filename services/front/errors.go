package main

import (
	"errors"
	"net/http"

	"shoplab/internal/web"
)

// gatewayError maps the gateway's own errors to their API.md answers (nil for any other error); this is the
// one place that does.
func gatewayError(err error, service string) *web.Error {
	switch {
	case errors.Is(err, errUnknownService):
		return web.Errorf(http.StatusNotFound, "unknown_service", "no public service named %q", service)
	case errors.Is(err, errNoInstance):
		return web.Errorf(http.StatusServiceUnavailable, "service_unavailable", "no passing instance of %s right now; try again shortly", service)
	case errors.Is(err, errMeshDenied):
		return web.Errorf(http.StatusServiceUnavailable, "service_unavailable", "%s does not accept calls from the front right now (service mesh intention)", service)
	case errors.Is(err, errUpstreamTimeout):
		return web.Errorf(http.StatusGatewayTimeout, "upstream_timeout", "%s did not answer in time", service)
	case errors.Is(err, errBadGateway):
		return web.Errorf(http.StatusBadGateway, "bad_gateway", "%s failed to answer", service)
	}
	return nil
}
