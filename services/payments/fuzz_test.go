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

// FuzzDecodeCharge: the charge decoder never panics, refuses with 400s, and accepts only Luhn-valid cards.
func FuzzDecodeCharge(f *testing.F) {
	f.Add(`{"order_id":"o","amount_cents":1,"currency":"USD","card":{"number":"4242424242424242","exp_month":1,"exp_year":2030,"cvc":"123"}}`)
	f.Add(`{"order_id":"o","amount_cents":-1,"currency":"US","card":{}}`)
	f.Add(`{"card":{"number":"4242 4242 4242 4242"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/payments", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, err := decodeCharge(r)
		if err != nil {
			var we *web.Error
			if !errors.As(err, &we) || we.Status != http.StatusBadRequest {
				t.Fatalf("refusal of %q: got %v; want a 400", body, err)
			}
			return
		}
		if !card.Luhn(req.Card.Number) || req.AmountCents < 1 || req.OrderID == "" {
			t.Fatalf("accepted %q as %+v", body, req)
		}
	})
}
