package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"shoplab/internal/card"
	"shoplab/internal/web"
)

// FuzzDecodeCheckout: the checkout decoder never panics, refuses with 400s, and accepts only a full address
// and a Luhn-valid card.
func FuzzDecodeCheckout(f *testing.F) {
	f.Add(checkoutBody(goodCard))
	f.Add(`{"shipping_address":{"country":"gb"},"card":{}}`)
	f.Add(`{"shipping_address":null,"card":{"number":"4242-4242-4242-4242"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/orders", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeCheckout(r)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
				t.Fatalf("refusal of %q: got %v; want a 400", body, err)
			}
			return
		}
		a := req.ShippingAddress
		if a.Name == "" || a.Line1 == "" || a.City == "" || a.PostalCode == "" || len(a.Country) != 2 || !card.Luhn(req.Card.Number) {
			t.Fatalf("accepted %q as %+v", body, req)
		}
	})
}
