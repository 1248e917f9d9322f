package main

import (
	"errors"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/web"
)

// writeError maps the front's own errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error, service string) {
	switch {
	case errors.Is(err, errUnknownService):
		err = web.Errorf(http.StatusNotFound, "unknown_service", "no public service named %q", service)
	case errors.Is(err, errNoInstance):
		err = web.Errorf(http.StatusServiceUnavailable, "service_unavailable", "no passing instance of %s right now; try again shortly", service)
	case errors.Is(err, errMeshDenied):
		err = web.Errorf(http.StatusServiceUnavailable, "service_unavailable", "%s does not accept calls from the front right now (service mesh intention)", service)
	case errors.Is(err, errUpstreamTimeout):
		err = web.Errorf(http.StatusGatewayTimeout, "upstream_timeout", "%s did not answer in time", service)
	case errors.Is(err, errBadGateway):
		err = web.Errorf(http.StatusBadGateway, "bad_gateway", "%s failed to answer", service)
	}
	web.WriteError(w, r, log, err)
}
