package main

import (
	"context"
	"net/http"
	"net/url"

	"shoplab/internal/svcclient"
)

const catalogService = "catalog"

// catalogProduct is what cart needs of a catalog product.
type catalogProduct struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Stock      int    `json:"stock"`
	Archived   bool   `json:"archived"`
}

// catalogClient asks catalog, found through Consul, for products.
type catalogClient struct{ c *svcclient.Client }

func (cc *catalogClient) Product(ctx context.Context, id string) (catalogProduct, error) {
	var p catalogProduct
	status, err := cc.c.CallJSON(ctx, catalogService, http.MethodGet, "/v1/products/"+url.PathEscape(id), nil, nil, &p)
	if status == http.StatusNotFound || (err == nil && p.Archived) {
		return catalogProduct{}, errProductNotFound // an archived product cannot be added to a cart
	}
	return p, err
}
