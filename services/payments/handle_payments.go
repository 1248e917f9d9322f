package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/card"
	"shoplab/internal/idem"
	"shoplab/internal/ids"
	"shoplab/internal/valid"
	"shoplab/internal/web"
)

// The test cards of API.md.
const (
	cardAuthorized = "4242424242424242"
	cardDeclined   = "4000000000000002"
)

type cardSummary struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// payment is a payment as the API shows it.
type payment struct {
	ID            string       `json:"id"`
	OrderID       string       `json:"order_id"`
	Status        string       `json:"status"` // authorized, declined, voided or refunded
	AmountCents   int64        `json:"amount_cents"`
	Currency      string       `json:"currency"`
	Card          *cardSummary `json:"card,omitempty"`
	DeclineReason string       `json:"decline_reason,omitempty"`
	CreatedAt     time.Time    `json:"created_at"`
}

type chargeRequest struct {
	OrderID     string     `json:"order_id"`
	AmountCents int64      `json:"amount_cents"`
	Currency    string     `json:"currency"`
	Card        card.Input `json:"card"`
}

var (
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
)

// decodeCharge reads and checks a POST /v1/payments body.
func decodeCharge(r *http.Request) (chargeRequest, error) {
	var req chargeRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	var err error
	if req.OrderID, err = valid.Text("order_id", req.OrderID, 1, 100); err != nil {
		return req, err
	}
	if req.AmountCents < 1 || req.AmountCents > 100_000_000 {
		return req, web.BadRequest("amount_cents must be from 1 to 100000000")
	}
	if !currencyRe.MatchString(req.Currency) {
		return req, web.BadRequest("currency must be a three-letter ISO code such as USD")
	}
	req.Card, err = card.Check("card", req.Card)
	return req, err
}

// fingerprint identifies a request for the idempotency store: the whole request, the whole card and its CVC
// too, under payments' key (idem.Fingerprinter: nothing stored can be tested against guessed card numbers
// without it).
func (req chargeRequest) fingerprint(f idem.Fingerprinter) []byte {
	c := req.Card
	return f.Of("%q|%d|%q|%q|%d|%d|%q", req.OrderID, req.AmountCents, req.Currency, c.Number, c.ExpMonth, c.ExpYear, c.CVC)
}

// decide authorises or declines a charge, as the test-card rules say.
func decide(req chargeRequest, now time.Time) payment {
	p := payment{
		ID: ids.New("pay"), OrderID: req.OrderID, Status: "authorized", AmountCents: req.AmountCents, Currency: req.Currency,
		Card: &cardSummary{Brand: card.Brand(req.Card.Number), Last4: card.Last4(req.Card.Number)}, CreatedAt: now.UTC(),
	}
	switch {
	case req.Card.Number == cardDeclined:
		p.Status, p.DeclineReason = "declined", "card_declined"
	case req.Card.Expired(now):
		p.Status, p.DeclineReason = "declined", "expired_card"
	}
	return p
}

// render is the answer for a payment: 201 (or 200 when it already existed) if authorized; 422 with the error
// body and the payment if declined; 409 if the order was voided or charged for another amount.
func render(r *http.Request, p payment, fresh bool, req chargeRequest) (web.Answer, error) {
	var we *web.Error
	switch {
	case p.Status == "voided" || p.Status == "refunded":
		we = web.Errorf(http.StatusConflict, "payment_closed", "this order's payment was %s; it cannot be charged again", p.Status)
	case p.AmountCents != req.AmountCents || p.Currency != req.Currency:
		we = web.Errorf(http.StatusConflict, "order_already_charged", "this order already has a payment for another amount")
	case p.Status == "declined":
		msg := "the card was declined"
		if p.DeclineReason == "expired_card" {
			msg = "the card has expired"
		}
		we = &web.Error{Status: http.StatusUnprocessableEntity, Code: "card_declined", Message: msg, Extra: map[string]any{"payment": p}}
	}
	if we != nil {
		return web.Answer{Status: we.Status, Body: we.Body(web.RequestID(r.Context()))}, nil
	}
	status := http.StatusOK
	if fresh {
		status = http.StatusCreated
	}
	b, err := json.Marshal(p)
	if err != nil {
		return web.Answer{}, err
	}
	return web.Answer{Status: status, Body: append(b, '\n')}, nil
}

type charger interface {
	// Charge runs one charge under key: it stores p unless the order has a payment, and stores the answer
	// render gives, in one transaction; a key seen before returns its stored answer (idem.ErrKeyReused if the
	// fingerprint differs).
	Charge(ctx context.Context, key string, fingerprint []byte, p payment, render func(existing payment, fresh bool) (web.Answer, error)) (web.Answer, bool, error)
}

func handleCharge(log hclog.Logger, store charger, prints idem.Fingerprinter, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := idem.Key(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		req, err := decodeCharge(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p := decide(req, now())
		a, created, err := store.Charge(r.Context(), key, req.fingerprint(prints), p, func(got payment, fresh bool) (web.Answer, error) {
			return render(r, got, fresh, req)
		})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if created {
			log.Info("payment "+p.Status, "payment_id", p.ID, "order_id", p.OrderID, "amount_cents", p.AmountCents,
				"currency", p.Currency, "brand", p.Card.Brand, "last4", p.Card.Last4)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.Status)
		_, _ = w.Write(a.Body)
	})
}

type voidRequest struct {
	OrderID string `json:"order_id"`
}

func decodeVoid(r *http.Request) (voidRequest, error) {
	var req voidRequest
	if err := web.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	var err error
	req.OrderID, err = valid.Text("order_id", req.OrderID, 1, 100)
	return req, err
}

type voider interface {
	// Void records a voided payment for the order unless it has one, and returns the order's payment.
	Void(ctx context.Context, p payment) (payment, error)
}

// handleVoid closes an order to charges: afterwards a charge for it is refused. If the order was already
// charged (or declined) that payment is returned instead, so the caller finishes the order accordingly.
func handleVoid(log hclog.Logger, store voider, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := decodeVoid(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := store.Void(r.Context(), payment{ID: ids.New("pay"), OrderID: req.OrderID, Status: "voided", Currency: "XXX", CreatedAt: now().UTC()})
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		log.Info("void requested", "order_id", req.OrderID, "payment_status", p.Status)
		web.WriteJSON(w, http.StatusOK, p)
	})
}

type paymentGetter interface {
	Payment(ctx context.Context, id string) (payment, error)
	PaymentForOrder(ctx context.Context, orderID string) (payment, error)
}

func handleGetPayment(log hclog.Logger, store paymentGetter, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := store.Payment(r.Context(), id(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	})
}

func handleFindPayment(log hclog.Logger, store paymentGetter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := web.Query(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		orderID, err := valid.Text("order_id", q.Get("order_id"), 1, 100)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		p, err := store.PaymentForOrder(r.Context(), orderID)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		web.WriteJSON(w, http.StatusOK, p)
	})
}

type refunder interface {
	Refund(ctx context.Context, id string) (payment, error)
}

func handleRefund(log hclog.Logger, store refunder, id func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := store.Refund(r.Context(), id(r))
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		log.Info("payment refunded", "payment_id", p.ID, "order_id", p.OrderID)
		web.WriteJSON(w, http.StatusOK, p)
	})
}
