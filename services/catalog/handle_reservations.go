package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/valid"
	"shoplab/internal/web"
)

type reservationItem struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// reservation is the stock held for one order.
type reservation struct {
	OrderID string            `json:"order_id"`
	Status  string            `json:"status"` // reserved, committed or released
	Items   []reservationItem `json:"items"`
}

type reserveRequest struct {
	OrderID string            `json:"order_id"`
	Items   []reservationItem `json:"items"`
}

const (
	maxItems    = 100
	maxQuantity = 999
)

// decodeReserve reads and checks a POST /internal/v1/reservations body; items come back sorted by product id.
func decodeReserve(r *http.Request) (reserveRequest, error) {
	var req reserveRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	var err error
	if req.OrderID, err = valid.Text("order_id", req.OrderID, 1, 100); err != nil {
		return req, err
	}
	if len(req.Items) == 0 || len(req.Items) > maxItems {
		return req, web.BadRequest("items must hold 1 to %d items", maxItems)
	}
	for i, it := range req.Items {
		if it.ProductID == "" || len(it.ProductID) > 100 {
			return req, web.BadRequest("items[%d].product_id must be a product id", i)
		}
		if err := valid.Int(fmt.Sprintf("items[%d].quantity", i), it.Quantity, 1, maxQuantity); err != nil {
			return req, err
		}
	}
	sortItems(req.Items)
	for i := 1; i < len(req.Items); i++ {
		if req.Items[i].ProductID == req.Items[i-1].ProductID {
			return req, web.BadRequest("product %s appears twice in items", req.Items[i].ProductID)
		}
	}
	return req, nil
}

func sortItems(items []reservationItem) {
	slices.SortFunc(items, func(a, b reservationItem) int { return strings.Compare(a.ProductID, b.ProductID) })
}

type reserver interface {
	// Reserve takes the stock of req for its order, or returns the order's existing reservation (created false).
	Reserve(ctx context.Context, req reserveRequest) (reservation, bool, error)
}

func handleReserve(log hclog.Logger, store reserver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeReserve(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		res, created, err := store.Reserve(r.Context(), req)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !created {
			if res.Status == "released" {
				writeError(w, r, log, errReservationReleased)
				return
			}
			if !slices.Equal(res.Items, req.Items) {
				writeError(w, r, log, errReservationMismatch)
				return
			}
			web.WriteJSON(w, http.StatusOK, res)
			return
		}
		log.Info("stock reserved", "order_id", req.OrderID, "items", len(req.Items))
		web.WriteJSON(w, http.StatusCreated, res)
	})
}

type reservationSettler interface {
	// Settle moves the order's reservation to status (committed or released), idempotently.
	Settle(ctx context.Context, orderID, status string) (reservation, error)
}

func handleSettle(log hclog.Logger, store reservationSettler, orderID func(*http.Request) string, status string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := store.Settle(r.Context(), orderID(r), status)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		log.Info("reservation "+status, "order_id", res.OrderID)
		web.WriteJSON(w, http.StatusOK, res)
	})
}

type reservationGetter interface {
	Reservation(ctx context.Context, orderID string) (reservation, error)
}

func handleGetReservation(log hclog.Logger, store reservationGetter, orderID func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := store.Reservation(r.Context(), orderID(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, res)
	})
}
