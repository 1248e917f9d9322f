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
	Version        int64  `json:"-"` // changes with every change to the line (internal view only)
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
	// SetItem inserts or replaces the item, refusing a cart over maxLines lines or in two currencies, and
	// returns the cart as it is afterwards.
	SetItem(ctx context.Context, userID string, it item) ([]item, error)
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
		items, err := store.SetItem(r.Context(), userID(r), it)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, newCart(items))
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

// internalLine is a cart line as orders reads it at checkout: with its version.
type internalLine struct {
	item
	Version int64 `json:"version"`
}

// handleInternalGetCart gives orders a user's cart at checkout, each line with its version.
func handleInternalGetCart(log hclog.Logger, store cartReader, user func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		items, err := store.Items(r.Context(), user(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		c := newCart(items)
		lines := make([]internalLine, len(c.Items))
		for i, it := range c.Items {
			lines[i] = internalLine{item: it, Version: it.Version}
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{"items": lines, "total_cents": c.TotalCents, "currency": c.Currency})
	})
}

// lineVersion names one cart line as it was when read.
type lineVersion struct {
	ProductID string `json:"product_id"`
	Version   int64  `json:"version"`
}

type removeRequest struct {
	Lines      []lineVersion `json:"lines"`
	ProductIDs []string      `json:"product_ids"` // orders placed before line versions existed
}

func decodeRemove(r *http.Request) (removeRequest, error) {
	var req removeRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	n := len(req.Lines) + len(req.ProductIDs)
	if n == 0 || n > 100 || (len(req.Lines) > 0 && len(req.ProductIDs) > 0) {
		return req, web.BadRequest("lines (or, for old orders, product_ids) must hold 1 to 100 entries")
	}
	for i, l := range req.Lines {
		if l.ProductID == "" || len(l.ProductID) > 100 || l.Version < 1 {
			return req, web.BadRequest("lines[%d] needs a product_id and a version", i)
		}
	}
	return req, nil
}

type lineRemover interface {
	itemRemover
	RemoveLines(ctx context.Context, userID string, lines []lineVersion) (int, error)
}

// handleInternalRemove takes the lines of a confirmed order out of its user's cart — each only in the version
// the order read, so a line set again since then stays; removing them again changes nothing. It answers how
// many lines it removed.
func handleInternalRemove(log hclog.Logger, store lineRemover, user func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeRemove(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var n int
		if len(req.Lines) > 0 {
			n, err = store.RemoveLines(r.Context(), user(r), req.Lines)
		} else {
			n, err = store.RemoveItems(r.Context(), user(r), req.ProductIDs)
		}
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		// How many lines went, not the cart: orders does not read it, and reading it back was one more query
		// per checkout.
		web.WriteJSON(w, http.StatusOK, map[string]int{"removed": n})
	})
}
