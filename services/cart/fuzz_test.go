package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"shoplab/internal/web"
)

// FuzzDecodeSetItem: the cart item decoder never panics, refuses with 400s, and accepts only 1–99.
func FuzzDecodeSetItem(f *testing.F) {
	for _, s := range []string{`{"quantity":1}`, `{"quantity":99}`, `{"quantity":100}`, `{"quantity":-1}`, `{"quantity":1.0}`, `{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPut, "/v1/cart/items/p", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeSetItem(r, "p")
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
				t.Fatalf("refusal of %q: got %v; want a 400", body, err)
			}
			return
		}
		if req.Quantity < 1 || req.Quantity > 99 {
			t.Fatalf("accepted quantity %d", req.Quantity)
		}
	})
}
