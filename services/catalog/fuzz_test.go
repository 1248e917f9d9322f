package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"shoplab/internal/web"
)

// FuzzParseProductQuery feeds arbitrary query strings to GET /v1/products' parser: no panic, refusals are
// 400s, and what it accepts is within the documented bounds.
func FuzzParseProductQuery(f *testing.F) {
	for _, s := range []string{"", "q=grinder", "limit=5&cursor=eyJuIjoiQSIsImkiOiJ4In0", "limit=0", "limit=101",
		"cursor=%%%", "q=%27%3B%20DROP", "category=books&q=go", "limit=1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/products", nil)
		r.URL.RawQuery = raw
		v, err := web.Query(r)
		if err == nil {
			var q productQuery
			q, err = parseProductQuery(v)
			if err == nil {
				if q.Limit < 1 || q.Limit > maxLimit || len([]rune(q.Q)) > 100 {
					t.Fatalf("accepted %q as %+v; want limit 1..100 and q ≤ 100 characters", raw, q)
				}
				return
			}
		}
		var we *web.Error
		if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
			t.Fatalf("refusal of %q: got %v; want a 400 *web.Error", raw, err)
		}
	})
}

// FuzzDecodeReserve feeds arbitrary bodies to the reservation decoder.
func FuzzDecodeReserve(f *testing.F) {
	for _, s := range []string{`{"order_id":"o","items":[{"product_id":"p","quantity":1}]}`,
		`{"order_id":"o","items":[{"product_id":"p","quantity":1},{"product_id":"p","quantity":2}]}`,
		`{"order_id":"","items":null}`, `{"items":[{"quantity":-1}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/internal/v1/reservations", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeReserve(r)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
				t.Fatalf("refusal of %q: got %v; want a 400 *web.Error", body, err)
			}
			return
		}
		if req.OrderID == "" || len(req.Items) == 0 || len(req.Items) > maxItems {
			t.Fatalf("accepted %q; want an order id and 1..%d items", body, maxItems)
		}
		for i, it := range req.Items {
			if it.Quantity < 1 || it.Quantity > maxQuantity || it.ProductID == "" {
				t.Fatalf("accepted item %+v", it)
			}
			if i > 0 && req.Items[i-1].ProductID >= it.ProductID {
				t.Fatalf("accepted items not sorted or with duplicates: %+v", req.Items)
			}
		}
	})
}
