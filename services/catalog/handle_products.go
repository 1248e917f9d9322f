package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/valid"
	"shoplab/internal/web"
)

// product is a product as the API shows it.
type product struct {
	ID          string `json:"id"`
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
	PriceCents  int64  `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       int    `json:"stock"`
	Archived    bool   `json:"archived"`
}

// productQuery is a parsed GET /v1/products query.
type productQuery struct {
	Q        string
	Category string
	Limit    int
	After    *cursor // nil: the first page
}

// cursor is the position after the last product of a page, in the list's order (name, id).
type cursor struct {
	Name string `json:"n"`
	ID   string `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err != nil || len(s) > 512 || json.Unmarshal(b, &c) != nil || c.ID == "" {
		return nil, web.BadRequest("cursor is not valid; pass the next_cursor of a previous page")
	}
	return &c, nil
}

const (
	defaultLimit = 20
	maxLimit     = 100
)

// parseProductQuery reads and checks the query of GET /v1/products.
func parseProductQuery(v url.Values) (productQuery, error) {
	q := productQuery{Limit: defaultLimit}
	var err error
	if q.Q, err = valid.Text("q", v.Get("q"), 0, 100); err != nil {
		return q, err
	}
	if q.Category, err = valid.Text("category", v.Get("category"), 0, 50); err != nil {
		return q, err
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return q, web.BadRequest("limit must be an integer from 1 to %d", maxLimit)
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		if q.After, err = decodeCursor(s); err != nil {
			return q, err
		}
	}
	return q, nil
}

type productLister interface {
	ListProducts(ctx context.Context, q productQuery) ([]product, error)
}

func handleListProducts(log hclog.Logger, store productLister) http.Handler {
	type answer struct {
		Products   []product `json:"products"`
		NextCursor *string   `json:"next_cursor"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values, err := web.Query(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		q, err := parseProductQuery(values)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		// One more than a page tells whether another page follows.
		limit := q.Limit
		q.Limit++
		products, err := store.ListProducts(r.Context(), q)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		a := answer{Products: products}
		if len(products) > limit {
			a.Products = products[:limit]
			last := a.Products[limit-1]
			next := cursor{Name: last.Name, ID: last.ID}.encode()
			a.NextCursor = &next
		}
		if a.Products == nil {
			a.Products = []product{}
		}
		web.WriteJSON(w, http.StatusOK, a)
	})
}

type productGetter interface {
	Product(ctx context.Context, id string) (product, error)
}

func handleGetProduct(log hclog.Logger, store productGetter, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := store.Product(r.Context(), id(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	})
}

type categoryLister interface {
	Categories(ctx context.Context) ([]string, error)
}

func handleListCategories(log hclog.Logger, store categoryLister) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cats, err := store.Categories(r.Context())
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if cats == nil {
			cats = []string{}
		}
		web.WriteJSON(w, http.StatusOK, map[string][]string{"categories": cats})
	})
}

// lookupRequest is the body of the internal POST /internal/v1/products/lookup.
type lookupRequest struct {
	IDs []string `json:"ids"`
}

func decodeLookup(r *http.Request) (lookupRequest, error) {
	var req lookupRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if len(req.IDs) == 0 || len(req.IDs) > maxLimit {
		return req, web.BadRequest("ids must hold 1 to %d product ids", maxLimit)
	}
	for i, id := range req.IDs {
		if id == "" || len(id) > 100 {
			return req, web.BadRequest("ids[%d] must be a product id", i)
		}
	}
	return req, nil
}

type productsByID interface {
	ProductsByID(ctx context.Context, ids []string) ([]product, error)
}

// handleLookupProducts answers the current products for a list of ids (unknown ids are left out), so orders
// prices a cart from the catalogue rather than from the client.
func handleLookupProducts(log hclog.Logger, store productsByID) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeLookup(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		products, err := store.ProductsByID(r.Context(), req.IDs)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if products == nil {
			products = []product{}
		}
		web.WriteJSON(w, http.StatusOK, map[string][]product{"products": products})
	})
}
