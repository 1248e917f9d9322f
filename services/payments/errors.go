package main

import (
	"errors"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

var (
	errNotFound      = errors.New("not found")
	errNotRefundable = errors.New("payment not refundable")
)

// writeError maps payments' errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	switch {
	case errors.Is(err, errNotFound):
		err = web.NotFound("payment")
	case errors.Is(err, errNotRefundable):
		err = web.Errorf(http.StatusConflict, "not_refundable", "only an authorized payment can be refunded")
	case pgdb.Unavailable(err):
		err = web.DatabaseUnavailable(err)
	}
	web.WriteError(w, r, log, err)
}
