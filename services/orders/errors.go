package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/internal/svcclient"
	"shoplab/internal/web"
)

var (
	errNotFound       = errors.New("not found")
	errCartEmpty      = errors.New("cart empty")
	errMixedCurrency  = errors.New("cart in several currencies")
	errNotCancellable = errors.New("order not cancellable")
)

type productGoneError struct{ productID string }

func (e *productGoneError) Error() string {
	return fmt.Sprintf("product %s is no longer sold", e.productID)
}

// writeError maps orders' errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	var gone *productGoneError
	switch {
	case errors.Is(err, errNotFound):
		err = web.NotFound("order")
	case errors.Is(err, errNotCancellable):
		err = web.Errorf(http.StatusConflict, "not_cancellable", "only a confirmed order can be cancelled; this one was never paid or is still being placed")
	case errors.Is(err, errCartEmpty):
		err = web.Errorf(http.StatusConflict, "cart_empty", "the cart is empty; add products before checking out")
	case errors.Is(err, errMixedCurrency):
		err = web.Errorf(http.StatusConflict, "currency_mismatch", "the cart holds products priced in different currencies")
	case errors.As(err, &gone):
		err = web.Errorf(http.StatusConflict, "product_unavailable", "%s; remove it from the cart", gone.Error())
	case svcclient.IsUnavailable(err):
		log.Warn("dependency unavailable", "error", err, "request_id", web.RequestID(r.Context()))
		err = web.Errorf(http.StatusServiceUnavailable, "dependency_unavailable",
			"a service the checkout needs is unavailable; nothing was charged twice — retry with the same Idempotency-Key")
	case svcclient.Remote(err) != nil && svcclient.Remote(err).Status >= 500:
		log.Warn("dependency failed", "error", err, "request_id", web.RequestID(r.Context()))
		err = web.Errorf(http.StatusServiceUnavailable, "dependency_unavailable",
			"a service the checkout needs failed; retry with the same Idempotency-Key")
	case pgdb.Unavailable(err):
		err = web.DatabaseUnavailable(err)
	}
	web.WriteError(w, r, log, err)
}
