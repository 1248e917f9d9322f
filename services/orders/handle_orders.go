package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/card"
	"shoplab/internal/idem"
	"shoplab/internal/ids"
	"shoplab/internal/valid"
	"shoplab/internal/web"
)

type orderItem struct {
	ProductID      string `json:"product_id"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	CartVersion    int64  `json:"-"` // the cart line's version it was read from
}

type address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// order is an order as stored.
type order struct {
	ID            string
	UserID        string
	Status        string
	Step          string
	Items         []orderItem
	TotalCents    int64
	Currency      string
	Shipping      address
	CardBrand     string
	CardLast4     string
	PaymentID     string
	FailureReason string
	CreatedAt     time.Time
}

// orderView is an order as the API shows it.
type orderView struct {
	ID         string      `json:"id"`
	Status     string      `json:"status"`
	Items      []orderItem `json:"items"`
	TotalCents int64       `json:"total_cents"`
	Currency   string      `json:"currency"`
	CreatedAt  string      `json:"created_at"`
}

func (o order) view() orderView {
	return orderView{ID: o.ID, Status: o.Status, Items: o.Items, TotalCents: o.TotalCents, Currency: o.Currency,
		CreatedAt: o.CreatedAt.UTC().Format(time.RFC3339)}
}

type checkoutRequest struct {
	ShippingAddress address    `json:"shipping_address"`
	Card            card.Input `json:"card"`
}

// decodeCheckout reads and checks a POST /v1/orders body.
func decodeCheckout(r *http.Request) (checkoutRequest, error) {
	var req checkoutRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	a := &req.ShippingAddress
	var err error
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"name", &a.Name, 100}, {"line1", &a.Line1, 200}, {"city", &a.City, 100}, {"postal_code", &a.PostalCode, 20}} {
		if *f.v, err = valid.Text("shipping_address."+f.name, *f.v, 1, f.max); err != nil {
			return req, err
		}
	}
	a.Country = strings.ToUpper(strings.TrimSpace(a.Country))
	if len(a.Country) != 2 || strings.Trim(a.Country, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return req, web.BadRequest("shipping_address.country must be a two-letter country code such as US")
	}
	req.Card, err = card.Check("card", req.Card)
	return req, err
}

// fingerprint identifies a checkout request for the idempotency store: the whole request — the address and
// the whole card, CVC included — under orders' key (idem.Fingerprinter: nothing stored can be tested against
// guessed card numbers without it).
func (req checkoutRequest) fingerprint(f idem.Fingerprinter) []byte {
	a, c := req.ShippingAddress, req.Card
	return f.Of("%q|%q|%q|%q|%q|%q|%d|%d|%q", a.Name, a.Line1, a.City, a.PostalCode, a.Country, c.Number, c.ExpMonth, c.ExpYear, c.CVC)
}

// keyRecord is a stored Idempotency-Key.
type keyRecord struct {
	Hash    []byte
	OrderID string
	Answer  *web.Answer // nil until the order reached a final state
}

// checkoutStore is what the checkout handler needs of the database.
type checkoutStore interface {
	KeyRecord(ctx context.Context, userID, key string) (keyRecord, bool, error)
	// CreateOrder stores o with the key in one transaction; created is false if the key already existed (the
	// order is then not stored and the existing record is returned).
	CreateOrder(ctx context.Context, o order, key string, hash []byte) (keyRecord, bool, error)
	Order(ctx context.Context, userID, id string) (order, error)
	// StoreAnswer keeps the first final answer for the key and returns whichever answer is stored.
	StoreAnswer(ctx context.Context, userID, key string, a web.Answer) (web.Answer, error)
}

// cartSource reads the caller's cart and the catalogue's prices.
type cartSource interface {
	Cart(ctx context.Context, userID string) ([]cartLine, error)
	Prices(ctx context.Context, ids []string) (map[string]catalogProduct, error)
}

func handleCreateOrder(log hclog.Logger, store checkoutStore, carts cartSource, s *saga, prints idem.Fingerprinter, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user, _ := authn.FromContext(ctx)
		key, err := idem.Key(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		req, err := decodeCheckout(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		hash := req.fingerprint(prints)
		rec, created, err := claimKey(ctx, log, store, carts, user.UserID, key, req, hash, now)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if !idem.Same(rec.Hash, hash) {
			writeError(w, r, log, idem.ErrKeyReused)
			return
		}
		if rec.Answer != nil {
			rec.Answer.Write(w)
			return
		}
		var o order
		if created != nil {
			o = *created // just stored: no need to read it back
		} else if o, err = store.Order(ctx, user.UserID, rec.OrderID); err != nil {
			writeError(w, r, log, err)
			return
		}
		o, err = s.drive(ctx, o, &req.Card)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		a, err := finalAnswer(r, o)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if a, err = store.StoreAnswer(ctx, user.UserID, key, a); err != nil {
			writeError(w, r, log, err)
			return
		}
		a.Write(w)
	})
}

// claimKey returns the record of the caller's Idempotency-Key, placing the cart as a new order under it if the
// key is new (then the order is returned too). Uniqueness comes from the key's primary key, inserted with the
// order in one statement: of concurrent requests with one key, one creates the order and the others get its
// record. Nearly every key is new, so the cart is priced before the key is looked up (one query less per
// checkout); a repeated request that cannot price the cart (emptied by the first, a product gone since) finds
// the key's record instead of the error.
func claimKey(ctx context.Context, log hclog.Logger, store checkoutStore, carts cartSource, userID, key string, req checkoutRequest, hash []byte, now func() time.Time) (keyRecord, *order, error) {
	o, err := priceCart(ctx, carts, userID, req, now)
	if err != nil {
		rec, found, lookErr := store.KeyRecord(ctx, userID, key)
		switch {
		case lookErr != nil:
			return keyRecord{}, nil, lookErr
		case found:
			return rec, nil, nil
		}
		return keyRecord{}, nil, err
	}
	rec, created, err := store.CreateOrder(ctx, o, key, hash)
	if err != nil || !created {
		return rec, nil, err
	}
	log.Info("order created", "order_id", o.ID, "user_id", userID, "total_cents", o.TotalCents, "items", len(o.Items))
	return rec, &o, nil
}

// priceCart turns the caller's cart into a new order priced from the catalogue.
func priceCart(ctx context.Context, carts cartSource, userID string, req checkoutRequest, now func() time.Time) (order, error) {
	lines, err := carts.Cart(ctx, userID)
	if err != nil {
		return order{}, err
	}
	if len(lines) == 0 {
		return order{}, errCartEmpty
	}
	productIDs := make([]string, len(lines))
	for i, l := range lines {
		productIDs[i] = l.ProductID
	}
	prices, err := carts.Prices(ctx, productIDs)
	if err != nil {
		return order{}, err
	}
	o := order{
		ID: ids.New("ord"), UserID: userID, Status: statusPending, Step: stepCreated, Shipping: req.ShippingAddress,
		CardBrand: card.Brand(req.Card.Number), CardLast4: card.Last4(req.Card.Number), CreatedAt: now().UTC().Truncate(time.Microsecond),
	}
	for _, l := range lines {
		p, ok := prices[l.ProductID]
		if !ok {
			return order{}, &productGoneError{productID: l.ProductID}
		}
		if o.Currency != "" && p.Currency != o.Currency {
			return order{}, errMixedCurrency
		}
		o.Currency = p.Currency
		o.Items = append(o.Items, orderItem{ProductID: p.ID, Name: p.Name, Quantity: l.Quantity, UnitPriceCents: p.PriceCents, CartVersion: l.Version})
		o.TotalCents += p.PriceCents * int64(l.Quantity)
	}
	slices.SortFunc(o.Items, func(a, b orderItem) int { return strings.Compare(a.ProductID, b.ProductID) })
	return o, nil
}

// finalAnswer is the answer for an order in a final state: 201 with the order when confirmed; 422 with the
// error body and the order when the payment failed; 409 when stock ran short.
func finalAnswer(r *http.Request, o order) (web.Answer, error) {
	var we *web.Error
	switch o.Status {
	case statusConfirmed:
		b, err := json.Marshal(o.view())
		if err != nil {
			return web.Answer{}, err
		}
		return web.Answer{Status: http.StatusCreated, Body: append(b, '\n')}, nil
	case statusPaymentFailed:
		msg := "the card was declined; the order was not charged and its stock was released"
		switch {
		case strings.Contains(o.FailureReason, "expired"):
			msg = "the card has expired; the order was not charged and its stock was released"
		case o.FailureReason == "payment_not_completed":
			msg = "the payment could not be completed; the order was not charged and its stock was released"
		}
		we = &web.Error{Status: http.StatusUnprocessableEntity, Code: "payment_declined", Message: msg, Extra: map[string]any{"order": o.view()}}
	case statusRejected:
		code, msg, _ := strings.Cut(o.FailureReason, ": ")
		if code == "insufficient_stock" {
			msg = "not enough stock: " + msg
		} else {
			code, msg = "product_unavailable", "a product in the cart is no longer available"
		}
		we = &web.Error{Status: http.StatusConflict, Code: code, Message: msg}
	default:
		return web.Answer{}, fmt.Errorf("order %s is not final (%s)", o.ID, o.Status)
	}
	return web.Answer{Status: we.Status, Body: we.Body(web.RequestID(r.Context()))}, nil
}

type orderLister interface {
	Orders(ctx context.Context, userID string, limit int) ([]order, error)
}

func handleListOrders(log hclog.Logger, store orderLister) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.FromContext(r.Context())
		orders, err := store.Orders(r.Context(), user.UserID, 100)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		views := make([]orderView, len(orders))
		for i, o := range orders {
			views[i] = o.view()
		}
		web.WriteJSON(w, http.StatusOK, map[string][]orderView{"orders": views})
	})
}

type orderGetter interface {
	Order(ctx context.Context, userID, id string) (order, error)
}

func handleGetOrder(log hclog.Logger, store orderGetter, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _ := authn.FromContext(r.Context())
		o, err := store.Order(r.Context(), user.UserID, id(r))
		if err != nil || o.Status == statusRejected {
			if err == nil {
				err = errNotFound
			}
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, o.view())
	})
}
