package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"shoplab/internal/card"
	"shoplab/internal/svcclient"
)

// The services orders calls, by their Consul names.
const (
	catalogService  = "catalog"
	cartService     = "cart"
	paymentsService = "payments"
)

// remote calls catalog, cart and payments through Consul discovery. Every call it makes is idempotent on the
// other side (per order id or Idempotency-Key), and each of those services says so in the retry policy it
// registers (catalog's reservations and lookups, cart's removal, payments' charges under their key, voids and
// refunds): svcclient sends a call to a second instance only by that policy (balancer.Do), or when the first
// never received it.
type remote struct{ c *svcclient.Client }

type cartLine struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
	Version   int64  `json:"version,omitempty"` // the line's version in cart when read
}

func (r *remote) Cart(ctx context.Context, userID string) ([]cartLine, error) {
	var c struct {
		Items []cartLine `json:"items"`
	}
	_, err := r.c.CallJSON(ctx, cartService, http.MethodGet, "/internal/v1/carts/"+url.PathEscape(userID), nil, nil, &c)
	if err != nil {
		return nil, fmt.Errorf("read cart: %w", err)
	}
	return c.Items, nil
}

// RemoveFromCart takes the order's lines out of the cart, each only in the version the order read; an order
// placed before versions were recorded removes its products.
func (r *remote) RemoveFromCart(ctx context.Context, userID string, items []orderItem) error {
	type line struct {
		ProductID string `json:"product_id"`
		Version   int64  `json:"version"`
	}
	var (
		lines []line
		ids   []string
	)
	for _, it := range items {
		if it.CartVersion > 0 {
			lines = append(lines, line{it.ProductID, it.CartVersion})
		} else {
			ids = append(ids, it.ProductID)
		}
	}
	var body any = map[string]any{"lines": lines}
	if len(lines) == 0 {
		body = map[string]any{"product_ids": ids}
	}
	_, err := r.c.CallJSON(ctx, cartService, http.MethodPost, "/internal/v1/carts/"+url.PathEscape(userID)+"/remove", nil, body, nil)
	if err != nil {
		return fmt.Errorf("empty cart: %w", err)
	}
	return nil
}

type catalogProduct struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

// Prices returns the catalogue's current product for each id it knows.
func (r *remote) Prices(ctx context.Context, ids []string) (map[string]catalogProduct, error) {
	var out struct {
		Products []catalogProduct `json:"products"`
	}
	if _, err := r.c.CallJSON(ctx, catalogService, http.MethodPost, "/internal/v1/products/lookup", nil, map[string][]string{"ids": ids}, &out); err != nil {
		return nil, fmt.Errorf("price cart: %w", err)
	}
	m := make(map[string]catalogProduct, len(out.Products))
	for _, p := range out.Products {
		m[p.ID] = p
	}
	return m, nil
}

// errStockRefused means catalog would not reserve: a product ran short or no longer exists.
type errStockRefused struct{ code, message string }

func (e *errStockRefused) Error() string { return e.message }

func (r *remote) Reserve(ctx context.Context, orderID string, items []orderItem) error {
	lines := make([]cartLine, len(items))
	for i, it := range items {
		lines[i] = cartLine{ProductID: it.ProductID, Quantity: it.Quantity}
	}
	_, err := r.c.CallJSON(ctx, catalogService, http.MethodPost, "/internal/v1/reservations", nil,
		map[string]any{"order_id": orderID, "items": lines}, nil)
	if re := svcclient.Remote(err); re != nil && (re.Code == "insufficient_stock" || re.Code == "product_not_found" || re.Code == "reservation_released") {
		return &errStockRefused{code: re.Code, message: re.Message}
	}
	if err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	return nil
}

var errReservationReleased = errors.New("reservation was released")

func (r *remote) settle(ctx context.Context, orderID, action string) error {
	_, err := r.c.CallJSON(ctx, catalogService, http.MethodPost, "/internal/v1/reservations/"+url.PathEscape(orderID)+"/"+action, nil, nil, nil)
	return err
}

func (r *remote) Commit(ctx context.Context, orderID string) error {
	err := r.settle(ctx, orderID, "commit")
	if re := svcclient.Remote(err); re != nil && re.Code == "reservation_released" {
		return errReservationReleased
	}
	if err != nil {
		return fmt.Errorf("commit stock: %w", err)
	}
	return nil
}

// ReturnStock gives a cancelled order's committed stock back to catalog (once, however often asked).
func (r *remote) ReturnStock(ctx context.Context, orderID string) error {
	if err := r.settle(ctx, orderID, "return"); err != nil {
		return fmt.Errorf("return stock: %w", err)
	}
	return nil
}

func (r *remote) Release(ctx context.Context, orderID string) error {
	if err := r.settle(ctx, orderID, "release"); err != nil {
		return fmt.Errorf("release stock: %w", err)
	}
	return nil
}

// chargeResult is what payments decided.
type chargeResult struct {
	status    string // authorized, declined, voided or refunded
	paymentID string
	reason    string // why it was declined
}

type paymentBody struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	DeclineReason string `json:"decline_reason"`
}

// Charge asks payments to charge the order's total, under a key derived from the order id so any retry (ours,
// a duplicate request's, or after a crash) can never charge twice. An error means the outcome is unknown.
func (r *remote) Charge(ctx context.Context, o order, c card.Input) (chargeResult, error) {
	var p paymentBody
	_, err := r.c.CallJSON(ctx, paymentsService, http.MethodPost, "/v1/payments", http.Header{"Idempotency-Key": {"order-" + o.ID}},
		map[string]any{"order_id": o.ID, "amount_cents": o.TotalCents, "currency": o.Currency, "card": c}, &p)
	if re := svcclient.Remote(err); re != nil {
		switch {
		case re.Status == http.StatusUnprocessableEntity:
			var d struct {
				Payment paymentBody `json:"payment"`
			}
			_ = json.Unmarshal(re.Body, &d)
			return chargeResult{status: "declined", paymentID: d.Payment.ID, reason: nonEmpty(d.Payment.DeclineReason, "card_declined")}, nil
		case re.Code == "payment_closed":
			return chargeResult{status: "voided", reason: "payment_not_completed"}, nil
		case re.Status == http.StatusBadRequest:
			return chargeResult{status: "declined", reason: "card_rejected"}, nil
		}
	}
	if err != nil {
		return chargeResult{}, fmt.Errorf("charge: %w", err)
	}
	return chargeResult{status: p.Status, paymentID: p.ID}, nil
}

// Void closes the order to charges and returns its payment: voided if it was never charged, else the payment
// that happened (the charge raced the void and won).
func (r *remote) Void(ctx context.Context, orderID string) (chargeResult, error) {
	var p paymentBody
	if _, err := r.c.CallJSON(ctx, paymentsService, http.MethodPost, "/v1/payments/void", nil, map[string]string{"order_id": orderID}, &p); err != nil {
		return chargeResult{}, fmt.Errorf("void payment: %w", err)
	}
	res := chargeResult{status: p.Status, paymentID: p.ID, reason: p.DeclineReason}
	if p.Status == "voided" {
		res.reason = "payment_not_completed"
	}
	return res, nil
}

func (r *remote) Refund(ctx context.Context, paymentID string) error {
	if _, err := r.c.CallJSON(ctx, paymentsService, http.MethodPost, "/v1/payments/"+url.PathEscape(paymentID)+"/refund", nil, nil, nil); err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	return nil
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
