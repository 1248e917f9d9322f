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
	errProductNotFound  = errors.New("product not found")
	errItemNotInCart    = errors.New("item not in cart")
	errCartFull         = errors.New("cart full")
	errCurrencyMismatch = errors.New("currency mismatch")
)

type insufficientStockError struct {
	name            string
	stock, quantity int
}

func (e *insufficientStockError) Error() string {
	return fmt.Sprintf("only %d of %s in stock; %d wanted", e.stock, e.name, e.quantity)
}

// writeError maps cart's errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	var short *insufficientStockError
	switch {
	case errors.Is(err, errProductNotFound):
		err = web.Errorf(http.StatusNotFound, "product_not_found", "no such product")
	case errors.Is(err, errItemNotInCart):
		err = web.Errorf(http.StatusNotFound, "not_found", "that product is not in the cart")
	case errors.Is(err, errCartFull):
		err = web.Errorf(http.StatusConflict, "cart_full", "a cart holds at most %d different products", maxLines)
	case errors.Is(err, errCurrencyMismatch):
		err = web.Errorf(http.StatusConflict, "currency_mismatch", "every item in a cart must be priced in the same currency")
	case errors.As(err, &short):
		err = web.Errorf(http.StatusConflict, "insufficient_stock", "%s", short.Error())
	case svcclient.IsUnavailable(err):
		log.Warn("dependency unavailable", "error", err)
		err = web.Errorf(http.StatusServiceUnavailable, "dependency_unavailable", "the catalog is unavailable right now; try again")
	case svcclient.Remote(err) != nil && svcclient.Remote(err).Status >= 500:
		log.Warn("dependency failed", "error", err)
		err = web.Errorf(http.StatusServiceUnavailable, "dependency_unavailable", "the catalog failed to answer; try again")
	case pgdb.Unavailable(err):
		err = web.DatabaseUnavailable(err)
	}
	web.WriteError(w, r, log, err)
}
