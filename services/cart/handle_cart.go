package main

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/valid"
	"shoplab/internal/web"
)

// maxLines is the most different products a cart holds.
const maxLines = 50

// defaultCurrency is the currency of an empty cart.
const defaultCurrency = "USD"

type item struct {
	ProductID      string `json:"product_id"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	Currency       string `json:"currency"`
}

// cart is a user's cart as the API shows it.
type cart struct {
	Items      []item `json:"items"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
}

func newCart(items []item) cart {
	c := cart{Items: items, Currency: defaultCurrency}
	if c.Items == nil {
		c.Items = []item{}
	}
	for _, it := range c.Items {
		c.TotalCents += it.UnitPriceCents * int64(it.Quantity)
		c.Currency = it.Currency
	}
	return c
}

type cartReader interface {
	Items(ctx context.Context, userID string) ([]item, error)
}

func userID(r *http.Request) string {
	c, _ := authn.FromContext(r.Context())
	return c.UserID
}

func writeCart(w http.ResponseWriter, r *http.Request, log hclog.Logger, store cartReader, user string) {
	items, err := store.Items(r.Context(), user)
	if err != nil {
		writeError(w, r, log, err)
		return
	}
	web.WriteJSON(w, http.StatusOK, newCart(items))
}

func handleGetCart(log hclog.Logger, store cartReader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeCart(w, r, log, store, userID(r))
	})
}

type setItemRequest struct {
	Quantity int `json:"quantity"`
}

// decodeSetItem reads and checks a PUT /v1/cart/items/{product_id} body.
func decodeSetItem(r *http.Request, productID string) (setItemRequest, error) {
	var req setItemRequest
	if _, err := valid.Text("product_id", productID, 1, 100); err != nil {
		return req, err
	}
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	return req, valid.Int("quantity", req.Quantity, 1, 99)
}

type productSource interface {
	Product(ctx context.Context, id string) (catalogProduct, error)
}

type itemSetter interface {
	cartReader
	// SetItem inserts or replaces the item, refusing a cart over maxLines lines or in two currencies.
	SetItem(ctx context.Context, userID string, it item) error
}

func handleSetItem(log hclog.Logger, store itemSetter, catalog productSource, productID func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := productID(r)
		req, err := decodeSetItem(r, id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := catalog.Product(r.Context(), id)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if req.Quantity > p.Stock {
			writeError(w, r, log, &insufficientStockError{name: p.Name, stock: p.Stock, quantity: req.Quantity})
			return
		}
		it := item{ProductID: p.ID, Name: p.Name, Quantity: req.Quantity, UnitPriceCents: p.PriceCents, Currency: p.Currency}
		if err := store.SetItem(r.Context(), userID(r), it); err != nil {
			writeError(w, r, log, err)
			return
		}
		writeCart(w, r, log, store, userID(r))
	})
}

type itemRemover interface {
	cartReader
	// RemoveItems deletes the given products from the cart (all of them when none are given) and reports
	// how many lines went.
	RemoveItems(ctx context.Context, userID string, productIDs []string) (int, error)
}

func handleDeleteItem(log hclog.Logger, store itemRemover, productID func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := store.RemoveItems(r.Context(), userID(r), []string{productID(r)})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if n == 0 {
			writeError(w, r, log, errItemNotInCart)
			return
		}
		writeCart(w, r, log, store, userID(r))
	})
}

func handleClearCart(log hclog.Logger, store itemRemover) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := store.RemoveItems(r.Context(), userID(r), nil); err != nil {
			writeError(w, r, log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleInternalGetCart gives orders a user's cart at checkout.
func handleInternalGetCart(log hclog.Logger, store cartReader, user func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeCart(w, r, log, store, user(r))
	})
}

type removeRequest struct {
	ProductIDs []string `json:"product_ids"`
}

func decodeRemove(r *http.Request) (removeRequest, error) {
	var req removeRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if len(req.ProductIDs) == 0 || len(req.ProductIDs) > 100 {
		return req, web.BadRequest("product_ids must hold 1 to 100 product ids")
	}
	return req, nil
}

// handleInternalRemove takes the products of a confirmed order out of its user's cart, leaving anything added
// since; removing them again changes nothing.
func handleInternalRemove(log hclog.Logger, store itemRemover, user func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeRemove(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if _, err := store.RemoveItems(r.Context(), user(r), req.ProductIDs); err != nil {
			writeError(w, r, log, err)
			return
		}
		writeCart(w, r, log, store, user(r))
	})
}
