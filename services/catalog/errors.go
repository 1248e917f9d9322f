package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

var (
	errNotFound                = errors.New("not found")
	errReservationMismatch     = errors.New("reservation exists with other items")
	errReservationReleased     = errors.New("reservation released")
	errReservationCommitted    = errors.New("reservation committed")
	errReservationNotFound     = errors.New("reservation not found")
	errReservationNotCommitted = errors.New("reservation not committed")
	errSKUTaken                = errors.New("sku taken")
)

// insufficientStockError names the product that ran short.
type insufficientStockError struct {
	productID string
	available int
	wanted    int
}

func (e *insufficientStockError) Error() string {
	return fmt.Sprintf("product %s has %d in stock; %d wanted", e.productID, e.available, e.wanted)
}

// unknownProductError names a product id that does not exist.
type unknownProductError struct{ productID string }

func (e *unknownProductError) Error() string {
	return fmt.Sprintf("product %s does not exist", e.productID)
}

// writeError maps catalog's errors to HTTP answers; this is the one place that does.
func writeError(w http.ResponseWriter, r *http.Request, log hclog.Logger, err error) {
	var (
		short   *insufficientStockError
		unknown *unknownProductError
	)
	switch {
	case errors.As(err, &short):
		err = web.Errorf(http.StatusConflict, "insufficient_stock", "%s", short.Error())
	case errors.As(err, &unknown):
		err = web.Errorf(http.StatusNotFound, "product_not_found", "%s", unknown.Error())
	case errors.Is(err, errNotFound):
		err = web.NotFound("product")
	case errors.Is(err, errReservationNotFound):
		err = web.NotFound("reservation")
	case errors.Is(err, errReservationMismatch):
		err = web.Errorf(http.StatusConflict, "reservation_mismatch", "this order already holds a reservation with other items")
	case errors.Is(err, errReservationReleased):
		err = web.Errorf(http.StatusConflict, "reservation_released", "this order's reservation was released")
	case errors.Is(err, errReservationNotCommitted):
		err = web.Errorf(http.StatusConflict, "reservation_not_committed", "this order's stock was never committed, so there is nothing to return")
	case errors.Is(err, errSKUTaken):
		err = web.Errorf(http.StatusConflict, "sku_taken", "a product with this sku already exists")
	case errors.Is(err, errReservationCommitted):
		err = web.Errorf(http.StatusConflict, "reservation_committed", "this order's reservation is committed and cannot be released")
	case pgdb.Unavailable(err):
		err = web.DatabaseUnavailable(err)
	}
	web.WriteError(w, r, log, err)
}
