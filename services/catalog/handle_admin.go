package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
	"shoplab/internal/idem"
	"shoplab/internal/ids"
	"shoplab/internal/valid"
	"shoplab/internal/web"
)

// Bounds of what an operator may set.
const (
	maxPriceCents = 100_000_000
	maxStock      = 1_000_000
)

var (
	skuRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

type createProductRequest struct {
	SKU         string `json:"sku"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Category    string `json:"category"`
	PriceCents  int64  `json:"price_cents"`
	Currency    string `json:"currency"`
	Stock       int    `json:"stock"`
}

func checkName(v string) (string, error)        { return valid.Text("name", v, 1, 200) }
func checkDescription(v string) (string, error) { return valid.Text("description", v, 0, 2000) }
func checkCategory(v string) (string, error)    { return valid.Text("category", v, 1, 50) }

func checkPrice(p int64) error {
	if p < 1 || p > maxPriceCents {
		return web.BadRequest("price_cents must be from 1 to %d", maxPriceCents)
	}
	return nil
}

// decodeCreateProduct reads and checks a POST /v1/products body; every refusal names the field.
func decodeCreateProduct(r *http.Request) (createProductRequest, error) {
	var req createProductRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	req.SKU = strings.TrimSpace(req.SKU)
	if !skuRe.MatchString(req.SKU) {
		return req, web.BadRequest("sku must be 1 to 64 letters, digits, dots, dashes or underscores, starting with a letter or digit")
	}
	var err error
	if req.Name, err = checkName(req.Name); err != nil {
		return req, err
	}
	if req.Description, err = checkDescription(req.Description); err != nil {
		return req, err
	}
	if req.Category, err = checkCategory(req.Category); err != nil {
		return req, err
	}
	if err := checkPrice(req.PriceCents); err != nil {
		return req, err
	}
	if err := valid.Currency("currency", req.Currency); err != nil {
		return req, err
	}
	return req, valid.Int("stock", req.Stock, 0, maxStock)
}

type productCreator interface {
	CreateProduct(ctx context.Context, p product) (product, error)
}

func handleCreateProduct(log hclog.Logger, store productCreator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeCreateProduct(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := store.CreateProduct(r.Context(), product{ID: ids.New("prd"), SKU: req.SKU, Name: req.Name, Description: req.Description,
			Category: req.Category, PriceCents: req.PriceCents, Currency: req.Currency, Stock: req.Stock})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		c, _ := authn.FromContext(r.Context())
		log.Info("product created", "product_id", p.ID, "sku", p.SKU, "by", c.UserID)
		web.WriteJSON(w, http.StatusCreated, p)
	})
}

// productPatch is a PATCH /v1/products/{id} body: the fields to change (nil: unchanged).
type productPatch struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	Category    *string `json:"category"`
	PriceCents  *int64  `json:"price_cents"`
}

func decodePatch(r *http.Request) (productPatch, error) {
	var p productPatch
	if err := web.DecodeJSON(r, &p); err != nil {
		return p, err
	}
	if p.Name == nil && p.Description == nil && p.Category == nil && p.PriceCents == nil {
		return p, web.BadRequest("give at least one of name, description, category, price_cents")
	}
	for _, f := range []struct {
		v     **string
		check func(string) (string, error)
	}{{&p.Name, checkName}, {&p.Description, checkDescription}, {&p.Category, checkCategory}} {
		if *f.v == nil {
			continue
		}
		s, err := f.check(**f.v)
		if err != nil {
			return p, err
		}
		*f.v = &s
	}
	if p.PriceCents != nil {
		if err := checkPrice(*p.PriceCents); err != nil {
			return p, err
		}
	}
	return p, nil
}

type productUpdater interface {
	UpdateProduct(ctx context.Context, id string, patch productPatch) (product, error)
}

func handleUpdateProduct(log hclog.Logger, store productUpdater, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		patch, err := decodePatch(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := store.UpdateProduct(r.Context(), id(r), patch)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		c, _ := authn.FromContext(r.Context())
		log.Info("product edited", "product_id", p.ID, "by", c.UserID)
		web.WriteJSON(w, http.StatusOK, p)
	})
}

type productArchiver interface {
	ArchiveProduct(ctx context.Context, id string) error
}

// handleArchiveProduct archives a product: it leaves lists, search, carts and checkout; orders that hold it
// keep it; GET /v1/products/{id} still answers, with archived true.
func handleArchiveProduct(log hclog.Logger, store productArchiver, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := store.ArchiveProduct(r.Context(), id(r)); err != nil {
			writeError(w, r, log, err)
			return
		}
		c, _ := authn.FromContext(r.Context())
		log.Info("product archived", "product_id", id(r), "by", c.UserID)
		w.WriteHeader(http.StatusNoContent)
	})
}

// stockAdjustment is one operator's change of a product's stock.
type stockAdjustment struct {
	Key    string
	Hash   []byte // what the request asked, to tell a repeat from another request under the same key
	Delta  int
	Reason string
	Actor  string
}

type adjustmentRequest struct {
	Delta  int    `json:"delta"`
	Reason string `json:"reason"`
}

// decodeAdjustment reads the Idempotency-Key header and a POST /v1/products/{id}/stock-adjustments body.
func decodeAdjustment(r *http.Request) (stockAdjustment, error) {
	key, err := idem.Key(r)
	if err != nil {
		return stockAdjustment{}, err
	}
	var req adjustmentRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return stockAdjustment{}, err
	}
	if req.Delta == 0 || req.Delta < -maxStock || req.Delta > maxStock {
		return stockAdjustment{}, web.BadRequest("delta must be a non-zero whole number from %d to %d", -maxStock, maxStock)
	}
	reason, err := valid.Text("reason", req.Reason, 1, 200)
	if err != nil {
		return stockAdjustment{}, err
	}
	return stockAdjustment{Key: key, Hash: idem.Fingerprint("%d|%q", req.Delta, reason), Delta: req.Delta, Reason: reason}, nil
}

type stockAdjuster interface {
	AdjustStock(ctx context.Context, id string, adj stockAdjustment) (product, error)
}

func handleAdjustStock(log hclog.Logger, store stockAdjuster, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		adj, err := decodeAdjustment(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		c, _ := authn.FromContext(r.Context())
		adj.Actor = c.UserID
		p, err := store.AdjustStock(r.Context(), id(r), adj)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		log.Info("stock adjusted", "product_id", p.ID, "delta", adj.Delta, "stock", p.Stock, "by", c.UserID)
		web.WriteJSON(w, http.StatusOK, p)
	})
}
