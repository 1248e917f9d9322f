package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type paymentsUnderTest struct {
	*testkit.Service
	db *sql.DB
}

func startPayments(t *testing.T) *paymentsUnderTest {
	t.Helper()
	dsn := testkit.NewDatabase(t)
	env := testkit.Defaults("payments")
	env["DATABASE_URL"], env["CONSUL_HTTP_ADDR"] = dsn, testkit.SharedConsul(t).HTTPAddr
	svc := testkit.Run(t, "payments", run, env)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &paymentsUnderTest{Service: svc, db: db}
}

func (p *paymentsUnderTest) count(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := p.db.QueryRow(`SELECT count(*) FROM payments WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func chargeBody(order string, amount int64, number string) string {
	return fmt.Sprintf(`{"order_id":%q,"amount_cents":%d,"currency":"USD","card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`,
		order, amount, number, time.Now().Year()+2)
}

func charge(t *testing.T, base, key, body string) testkit.Resp {
	t.Helper()
	return testkit.Call(t, "POST", base+"/v1/payments", body, "Idempotency-Key", key)
}

func TestTestCards(t *testing.T) {
	p := startPayments(t)
	expired := fmt.Sprintf(`{"order_id":"ord_exp","amount_cents":500,"currency":"USD","card":{"number":"4242424242424242","exp_month":1,"exp_year":%d,"cvc":"123"}}`, time.Now().Year()-1)
	tests := []struct {
		name, body string
		status     int
		code       string
		payStatus  string
	}{
		{"authorised", chargeBody("ord_ok", 1299, "4242424242424242"), 201, "", "authorized"},
		{"authorised with spaces", chargeBody("ord_sp", 1299, "4242 4242 4242 4242"), 201, "", "authorized"},
		{"declined", chargeBody("ord_dec", 1299, "4000000000000002"), 422, "card_declined", "declined"},
		{"expired", expired, 422, "card_declined", "declined"},
		{"fails Luhn", chargeBody("ord_luhn", 1299, "4242424242424241"), 400, "invalid_request", ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := charge(t, p.URL, fmt.Sprintf("key-%d", i), tc.body)
			if tc.code != "" {
				testkit.WantError(t, r, tc.status, tc.code)
			} else if r.Status != tc.status {
				t.Fatalf("got %d %s; want %d", r.Status, r.Body, tc.status)
			}
			if tc.payStatus == "" {
				return
			}
			var got struct {
				payment
				Payment *payment `json:"payment"`
			}
			r.Decode(t, &got)
			pay := got.payment
			if got.Payment != nil {
				pay = *got.Payment
			}
			if pay.Status != tc.payStatus || pay.Card == nil || pay.Card.Brand != "visa" || len(pay.Card.Last4) != 4 {
				t.Fatalf("payment: got %+v; want %s, visa, last4", pay, tc.payStatus)
			}
		})
	}
	if n := p.count(t, "order_id = 'ord_luhn'"); n != 0 {
		t.Fatalf("payments for a Luhn-invalid card: got %d; want 0", n)
	}
}

func TestIdempotency(t *testing.T) {
	p := startPayments(t)
	body := chargeBody("ord_1", 4200, "4242424242424242")
	first := charge(t, p.URL, "k1", body)
	again := charge(t, p.URL, "k1", body)
	if first.Status != 201 || again.Status != 201 || first.String() != again.String() {
		t.Fatalf("replay: got %d %s then %d %s; want the same 201 twice", first.Status, first.Body, again.Status, again.Body)
	}
	testkit.WantError(t, charge(t, p.URL, "k1", chargeBody("ord_1", 4300, "4242424242424242")), 409, "idempotency_key_reused")
	// The whole card is fingerprinted (issue 28 §6): another card with the same brand, length and last four
	// digits, or another CVC, is another request. Before, both answered 201 with the first card's payment.
	testkit.WantError(t, charge(t, p.URL, "k1", chargeBody("ord_1", 4200, "4242004242424242")), 409, "idempotency_key_reused")
	testkit.WantError(t, charge(t, p.URL, "k1", strings.Replace(body, `"cvc":"123"`, `"cvc":"999"`, 1)), 409, "idempotency_key_reused")
	// What is stored is keyed: no digest anyone could compute without payments' key.
	var stored []byte
	if err := p.db.QueryRow(`SELECT request_hash FROM idempotency_keys WHERE key = 'k1'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	unkeyed := sha256.Sum256(fmt.Appendf(nil, "%q|%d|%q|%q|%d|%d|%q", "ord_1", 4200, "USD", "4242424242424242", 12, time.Now().Year()+2, "123"))
	if len(stored) != sha256.Size || bytes.Equal(stored, unkeyed[:]) {
		t.Fatalf("stored fingerprint: got %x; want an HMAC of 32 bytes, not the plain SHA-256 of the request", stored)
	}
	// Another key for the same order: still one payment per order.
	other := charge(t, p.URL, "k2", body)
	if other.Status != 200 || p.count(t, "order_id = 'ord_1'") != 1 {
		t.Fatalf("second key, same order: got %d and %d payments; want 200 and 1", other.Status, p.count(t, "order_id = 'ord_1'"))
	}
	testkit.WantError(t, charge(t, p.URL, "k3", chargeBody("ord_1", 9999, "4242424242424242")), 409, "order_already_charged")

	// 50 concurrent requests with one key: one payment, one answer.
	body = chargeBody("ord_many", 1000, "4242424242424242")
	answers := make([]string, 50)
	statuses := make([]int, 50)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", p.URL+"/v1/payments", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "same-key")
			resp, err := testkit.HTTPClient(t, req.URL.String()).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers[i], statuses[i] = string(b), resp.StatusCode
		}()
	}
	wg.Wait()
	for i := range answers {
		if statuses[i] != 201 || answers[i] != answers[0] {
			t.Fatalf("answer %d: got %d %s; want the same 201 as the first (%s)", i, statuses[i], answers[i], answers[0])
		}
	}
	if n := p.count(t, "order_id = 'ord_many'"); n != 1 {
		t.Fatalf("payments after 50 concurrent requests: got %d; want 1", n)
	}
}

func TestVoidAndRefund(t *testing.T) {
	p := startPayments(t)
	// Voiding an order never charged closes it to charges.
	r := testkit.Call(t, "POST", p.URL+"/v1/payments/void", `{"order_id":"ord_v"}`)
	var v payment
	r.Decode(t, &v)
	if r.Status != 200 || v.Status != "voided" {
		t.Fatalf("void: got %d %s; want 200 voided", r.Status, r.Body)
	}
	testkit.WantError(t, charge(t, p.URL, "late", chargeBody("ord_v", 100, "4242424242424242")), 409, "payment_closed")

	// Voiding an order already charged returns that payment.
	var paid payment
	charge(t, p.URL, "c1", chargeBody("ord_c", 700, "4242424242424242")).Decode(t, &paid)
	r = testkit.Call(t, "POST", p.URL+"/v1/payments/void", `{"order_id":"ord_c"}`)
	r.Decode(t, &v)
	if v.Status != "authorized" || v.ID != paid.ID {
		t.Fatalf("void of a charged order: got %+v; want the authorized payment %s", v, paid.ID)
	}
	r = testkit.Call(t, "GET", p.URL+"/v1/payments?order_id=ord_c", "")
	r.Decode(t, &v)
	if r.Status != 200 || v.ID != paid.ID {
		t.Fatalf("find by order: got %d %s", r.Status, r.Body)
	}

	for i := 0; i < 2; i++ {
		r = testkit.Call(t, "POST", p.URL+"/v1/payments/"+paid.ID+"/refund", "")
		r.Decode(t, &v)
		if r.Status != 200 || v.Status != "refunded" {
			t.Fatalf("refund #%d: got %d %s; want 200 refunded", i+1, r.Status, r.Body)
		}
	}
	var declined struct {
		Payment payment `json:"payment"`
	}
	charge(t, p.URL, "d1", chargeBody("ord_d", 700, "4000000000000002")).Decode(t, &declined)
	testkit.WantError(t, testkit.Call(t, "POST", p.URL+"/v1/payments/"+declined.Payment.ID+"/refund", ""), 409, "not_refundable")
	testkit.WantError(t, testkit.Call(t, "POST", p.URL+"/v1/payments/pay_nope/refund", ""), 404, "not_found")
	testkit.WantError(t, testkit.Call(t, "GET", p.URL+"/v1/payments?order_id=ord_nope", ""), 404, "not_found")
}

// TestCardNumbersNeverKept: after charges, no full card number is in any table or in the log.
func TestCardNumbersNeverKept(t *testing.T) {
	p := startPayments(t)
	numbers := []string{"4242424242424242", "4000000000000002", "5555555555554444"}
	for i, n := range numbers {
		charge(t, p.URL, fmt.Sprintf("n%d", i), chargeBody(fmt.Sprintf("ord_n%d", i), 100, n))
	}
	for _, table := range []string{"payments", "idempotency_keys"} {
		var dump string
		if err := p.db.QueryRow(`SELECT coalesce(string_agg(t::text, ' '), '') FROM ` + table + ` t`).Scan(&dump); err != nil {
			t.Fatal(err)
		}
		for _, n := range numbers {
			if strings.Contains(dump, n) || strings.Contains(dump, n[:12]) {
				t.Fatalf("table %s holds card number %s", table, n)
			}
		}
	}
	for _, n := range numbers {
		if strings.Contains(p.Logs(), n) || strings.Contains(p.Logs(), n[:8]) {
			t.Fatalf("log holds card number %s", n)
		}
	}
}

func TestBadCharges(t *testing.T) {
	p := startPayments(t)
	good := chargeBody("ord_b", 100, "4242424242424242")
	tests := []struct {
		name, key, body string
		status          int
		code, field     string
	}{
		{"no key", "", good, 400, "invalid_request", "Idempotency-Key"},
		{"key too long", strings.Repeat("k", 65), good, 400, "invalid_request", "Idempotency-Key"},
		{"no order", "a", `{"amount_cents":1,"currency":"USD","card":{"number":"4242424242424242","exp_month":1,"exp_year":2030,"cvc":"123"}}`, 400, "invalid_request", "order_id"},
		{"zero amount", "a", chargeBody("o", 0, "4242424242424242"), 400, "invalid_request", "amount_cents"},
		{"lower-case currency", "a", strings.Replace(good, "USD", "usd", 1), 400, "invalid_request", "currency"},
		{"letters in number", "a", chargeBody("o", 1, "4242-abcd-4242-4242"), 400, "invalid_request", "card.number"},
		{"bad month", "a", strings.Replace(good, `"exp_month":12`, `"exp_month":0`, 1), 400, "invalid_request", "exp_month"},
		{"bad cvc", "a", strings.Replace(good, `"cvc":"123"`, `"cvc":"1"`, 1), 400, "invalid_request", "cvc"},
		{"unknown field", "a", strings.Replace(good, `"currency"`, `"tip":5,"currency"`, 1), 400, "invalid_request", "tip"},
		{"malformed", "a", `{"order_id":`, 400, "invalid_request", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, charge(t, p.URL, tc.key, tc.body), tc.status, tc.code)
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %s", msg, tc.field)
			}
		})
	}
	testkit.WantError(t, testkit.Call(t, "POST", p.URL+"/v1/payments", good, "Idempotency-Key", "a", "Content-Type", "text/plain"), 415, "unsupported_media_type")
	testkit.WantError(t, charge(t, p.URL, "a", `{"order_id":"`+strings.Repeat("x", 1<<20)+`"}`), 413, "body_too_large")
	if n := p.count(t, "true"); n != 0 {
		t.Fatalf("payments after bad requests: got %d; want 0", n)
	}
}

func TestGetPaymentAndBadVoids(t *testing.T) {
	p := startPayments(t)
	var paid payment
	charge(t, p.URL, "g1", chargeBody("ord_g", 1500, "4242424242424242")).Decode(t, &paid)
	r := testkit.Call(t, "GET", p.URL+"/v1/payments/"+paid.ID, "")
	var got payment
	r.Decode(t, &got)
	if r.Status != 200 || got.ID != paid.ID || got.Status != "authorized" || got.AmountCents != 1500 || got.Card == nil || got.Card.Last4 != "4242" {
		t.Fatalf("get payment: got %d %s; want the authorized payment of 1500 with last4 4242", r.Status, r.Body)
	}
	testkit.WantError(t, testkit.Call(t, "GET", p.URL+"/v1/payments/pay_none", ""), 404, "not_found")
	testkit.WantError(t, testkit.Call(t, "GET", p.URL+"/v1/payments", ""), 400, "invalid_request")

	for _, tc := range []struct{ name, body, field string }{
		{"no order id", `{}`, "order_id"},
		{"unknown field", `{"order_id":"o","refund":true}`, `"refund"`},
		{"malformed", `{"order_id":`, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, testkit.Call(t, "POST", p.URL+"/v1/payments/void", tc.body), 400, "invalid_request")
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}
	if n := p.count(t, "status = 'voided'"); n != 0 {
		t.Fatalf("voided payments after bad voids: got %d; want 0", n)
	}
}
