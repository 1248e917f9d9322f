package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/web"
)

// orderCursor is the position after the last order of a page, in the list's order (newest first).
type orderCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"i"`
}

func (c orderCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeOrderCursor(s string) (*orderCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c orderCursor
	if err != nil || len(s) > 512 || json.Unmarshal(b, &c) != nil || c.ID == "" || c.CreatedAt.IsZero() {
		return nil, web.BadRequest("cursor is not valid; pass the next_cursor of a previous page")
	}
	return &c, nil
}

// adminQuery is a parsed GET /v1/admin/orders query.
type adminQuery struct {
	Status string
	Limit  int
	After  *orderCursor
}

func parseAdminQuery(v url.Values) (adminQuery, error) {
	q := adminQuery{Limit: 20, Status: v.Get("status")}
	switch q.Status {
	case "", statusPending, statusConfirmed, statusPaymentFailed, statusCancelled:
	default:
		return q, web.BadRequest("status must be one of pending, confirmed, payment_failed, cancelled")
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return q, web.BadRequest("limit must be an integer from 1 to 100")
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		c, err := decodeOrderCursor(s)
		if err != nil {
			return q, err
		}
		q.After = c
	}
	return q, nil
}

// adminOrderView is an order as admins see it: with its user.
type adminOrderView struct {
	orderView
	UserID string `json:"user_id"`
}

type allOrdersLister interface {
	AllOrders(ctx context.Context, status string, after *orderCursor, limit int) ([]order, error)
}

// handleAdminOrders lists every user's orders for admins, newest first, a page at a time.
func handleAdminOrders(log hclog.Logger, store allOrdersLister) http.Handler {
	type answer struct {
		Orders     []adminOrderView `json:"orders"`
		NextCursor *string          `json:"next_cursor"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values, err := web.Query(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		q, err := parseAdminQuery(values)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		orders, err := store.AllOrders(r.Context(), q.Status, q.After, q.Limit+1) // one more tells whether a page follows
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		a := answer{Orders: []adminOrderView{}}
		if len(orders) > q.Limit {
			orders = orders[:q.Limit]
			last := orders[len(orders)-1]
			next := orderCursor{CreatedAt: last.CreatedAt, ID: last.ID}.encode()
			a.NextCursor = &next
		}
		for _, o := range orders {
			a.Orders = append(a.Orders, adminOrderView{orderView: o.view(), UserID: o.UserID})
		}
		web.WriteJSON(w, http.StatusOK, a)
	})
}

type cancelStore interface {
	OrderAnyUser(ctx context.Context, id string) (order, error)
	StartCancel(ctx context.Context, id, by string) error
}

// handleCancelOrder cancels a confirmed order for its owner or an admin: the payment is refunded and the stock
// returned, each exactly once however often this is called, retried or raced (see saga). Another user's
// order is not found; an order that was never paid is 409 not_cancellable; a cancelled one is answered as it
// is. If a dependency is down the cancellation stays under way (503) and the recovery worker finishes it.
func handleCancelOrder(log hclog.Logger, store cancelStore, s *saga, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		c, _ := authn.FromContext(ctx)
		o, err := store.OrderAnyUser(ctx, id(r))
		if err == nil && ((o.UserID != c.UserID && !c.HasRole(authn.RoleAdmin)) || o.Status == statusRejected) {
			err = errNotFound // nothing about another user's order leaks
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		switch {
		case o.Status == statusCancelled:
			web.WriteJSON(w, http.StatusOK, o.view())
			return
		case o.Step == stepDone && o.Status == statusConfirmed:
			if err := store.StartCancel(ctx, o.ID, c.UserID); err != nil {
				writeError(w, r, log, err)
				return
			}
			if o, err = store.OrderAnyUser(ctx, o.ID); err != nil {
				writeError(w, r, log, err)
				return
			}
			log.Info("order cancellation started", "order_id", o.ID, "by", c.UserID, "admin", c.UserID != o.UserID)
		case o.Step == stepCancelling || o.Step == stepRefunded:
		default:
			writeError(w, r, log, errNotCancellable)
			return
		}
		o, err = s.drive(ctx, o, nil)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if o.Status != statusCancelled {
			writeError(w, r, log, errNotCancellable)
			return
		}
		web.WriteJSON(w, http.StatusOK, o.view())
	})
}
