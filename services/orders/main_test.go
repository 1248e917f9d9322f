package main

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"shoplab/internal/topology"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const (
	grinder = "prd_01hx4kq2m3coffeegrinder" // 8900
	kettle  = "prd_01hx4kq2m3kettle000004"  // 4500
)

const (
	goodCard     = "4242424242424242"
	declinedCard = "4000000000000002"
)

type fixture struct {
	stack  *testkit.Stack
	orders *testkit.Service
	env    map[string]string
}

// start runs the services orders needs (provisioning/topology.yml) as binaries and orders in-process, all in
// one Consul agent.
func start(t *testing.T, env map[string]string) *fixture {
	t.Helper()
	st := testkit.StartStack(t, topology.Default().Needs("orders")...)
	full := st.Env(t, "orders")
	for k, v := range env {
		full[k] = v
	}
	return &fixture{stack: st, orders: testkit.Run(t, "orders", run, full), env: full}
}

func (f *fixture) db(t *testing.T, service string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", f.stack.DSN[service])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func (f *fixture) count(t *testing.T, service, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db(t, service).QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) stock(t *testing.T, product string) int {
	t.Helper()
	return f.count(t, "catalog", `SELECT stock FROM products WHERE id = $1`, product)
}

func (f *fixture) add(t *testing.T, u testkit.User, product string, qty int) {
	t.Helper()
	r := testkit.Call(t, "PUT", f.stack.URL("cart")+"/v1/cart/items/"+product, fmt.Sprintf(`{"quantity":%d}`, qty), u.Bearer()...)
	if r.Status != 200 {
		t.Fatalf("add %s to cart: got %d %s", product, r.Status, r.Body)
	}
}

func (f *fixture) cartLines(t *testing.T, u testkit.User) int {
	t.Helper()
	var c struct {
		Items []any `json:"items"`
	}
	testkit.Call(t, "GET", f.stack.URL("cart")+"/v1/cart", "", u.Bearer()...).Decode(t, &c)
	return len(c.Items)
}

func checkoutBody(cardNumber string) string {
	return fmt.Sprintf(`{"shipping_address":{"name":"Ada Lovelace","line1":"12 St James's Square","city":"London","postal_code":"SW1Y 4JH","country":"GB"},
		"card":{"number":%q,"exp_month":12,"exp_year":%d,"cvc":"123"}}`, cardNumber, time.Now().Year()+3)
}

func (f *fixture) checkout(t *testing.T, u testkit.User, key, body string) testkit.Resp {
	t.Helper()
	return testkit.Call(t, "POST", f.orders.URL+"/v1/orders", body, append(u.Bearer(), "Idempotency-Key", key)...)
}

type declined struct {
	Error struct{ Code, Message string } `json:"error"`
	Order orderView                      `json:"order"`
}

func TestHappyPath(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0, k0 := f.stock(t, grinder), f.stock(t, kettle)
	f.add(t, u, grinder, 2)
	f.add(t, u, kettle, 1)

	r := f.checkout(t, u, "first-order", checkoutBody(goodCard))
	if r.Status != 201 {
		t.Fatalf("checkout: got %d %s; want 201", r.Status, r.Body)
	}
	var o orderView
	r.Decode(t, &o)
	if o.Status != "confirmed" || o.TotalCents != 2*8900+4500 || o.Currency != "USD" || len(o.Items) != 2 || !strings.HasPrefix(o.ID, "ord_") {
		t.Fatalf("order: got %+v; want confirmed, 22300 USD, 2 items", o)
	}
	if _, err := time.Parse(time.RFC3339, o.CreatedAt); err != nil || !strings.HasSuffix(o.CreatedAt, "Z") {
		t.Fatalf("created_at: got %q; want RFC 3339 UTC", o.CreatedAt)
	}
	if g, k := f.stock(t, grinder), f.stock(t, kettle); g != g0-2 || k != k0-1 {
		t.Fatalf("stock: got grinder %d kettle %d; want %d and %d", g, k, g0-2, k0-1)
	}
	if n := f.cartLines(t, u); n != 0 {
		t.Fatalf("cart after checkout: got %d lines; want empty", n)
	}
	if n := f.count(t, "payments", `SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'authorized' AND amount_cents = 22300 AND card_last4 = '4242'`, o.ID); n != 1 {
		t.Fatalf("payments: got %d; want one authorized payment of 22300", n)
	}
	if n := f.count(t, "catalog", `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'committed'`, o.ID); n != 1 {
		t.Fatalf("reservation: got %d committed; want 1", n)
	}

	// History, newest first, and the order itself.
	f.add(t, u, kettle, 1)
	second := f.checkout(t, u, "second-order", checkoutBody(goodCard))
	var o2 orderView
	second.Decode(t, &o2)
	var hist struct {
		Orders []orderView `json:"orders"`
	}
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders", "", u.Bearer()...).Decode(t, &hist)
	if len(hist.Orders) != 2 || hist.Orders[0].ID != o2.ID || hist.Orders[1].ID != o.ID {
		t.Fatalf("history: got %+v; want [%s %s]", hist.Orders, o2.ID, o.ID)
	}
	var got orderView
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+o.ID, "", u.Bearer()...).Decode(t, &got)
	if got.ID != o.ID || got.TotalCents != o.TotalCents || got.Status != "confirmed" {
		t.Fatalf("order by id: got %+v; want %+v", got, o)
	}
}

// TestConcurrentSameKey: 50 checkouts with one key at once make one order, one payment, one stock decrement,
// and every answer is the same; the same key with another body is refused.
func TestConcurrentSameKey(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0 := f.stock(t, grinder)
	f.add(t, u, grinder, 3)

	body := checkoutBody(goodCard)
	statuses := make([]int, 50)
	bodies := make([]string, 50)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			req, _ := http.NewRequest("POST", f.orders.URL+"/v1/orders", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+u.Token)
			req.Header.Set("Idempotency-Key", "one-key")
			resp, err := testkit.HTTPClient(t, req.URL.String()).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			statuses[i], bodies[i] = resp.StatusCode, string(b)
		}()
	}
	close(gate)
	wg.Wait()
	for i := range statuses {
		if statuses[i] != 201 || bodies[i] != bodies[0] {
			t.Fatalf("answer %d: got %d %s; want 201 and the same body as answer 0 (%s)", i, statuses[i], bodies[i], bodies[0])
		}
	}
	var o orderView
	testkit.Resp{Body: []byte(bodies[0])}.Decode(t, &o)
	if n := f.count(t, "orders", `SELECT count(*) FROM orders WHERE user_id = $1`, u.ID); n != 1 {
		t.Fatalf("orders: got %d; want 1", n)
	}
	if n := f.count(t, "payments", `SELECT count(*) FROM payments WHERE order_id = $1`, o.ID); n != 1 {
		t.Fatalf("payments: got %d; want 1", n)
	}
	if g := f.stock(t, grinder); g != g0-3 {
		t.Fatalf("stock: got %d; want %d (one decrement of 3)", g, g0-3)
	}
	// Later repeats get the same answer too, even with the cart now empty.
	if r := f.checkout(t, u, "one-key", body); r.Status != 201 || r.String() != bodies[0] {
		t.Fatalf("later repeat: got %d %s; want the same 201", r.Status, r.Body)
	}
	testkit.WantError(t, f.checkout(t, u, "one-key", strings.Replace(body, "London", "Paris", 1)), 409, "idempotency_key_reused")
	// The whole card is fingerprinted (issue 28 §6): the same key with another CVC, or another card with the same
	// brand, length and last four digits, is another request — before, each answered the first order's 201 (and
	// a saga resumed by it would have charged the new card).
	for _, other := range []string{strings.Replace(body, `"cvc":"123"`, `"cvc":"999"`, 1), strings.Replace(body, "4242424242424242", "4242004242424242", 1)} {
		if other == body {
			t.Fatalf("the test's checkout body has changed: %s", body)
		}
		testkit.WantError(t, f.checkout(t, u, "one-key", other), 409, "idempotency_key_reused")
	}
	if n := f.count(t, "payments", `SELECT count(*) FROM payments`); n != 1 {
		t.Fatalf("payments after the repeats: got %d; want 1", n)
	}
}

func TestDeclinedAndRefused(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0 := f.stock(t, grinder)
	f.add(t, u, grinder, 2)

	r := f.checkout(t, u, "declined", checkoutBody(declinedCard))
	testkit.WantError(t, r, 422, "payment_declined")
	var d declined
	r.Decode(t, &d)
	if d.Order.Status != "payment_failed" || d.Order.ID == "" {
		t.Fatalf("declined order: got %+v; want payment_failed", d.Order)
	}
	if g := f.stock(t, grinder); g != g0 {
		t.Fatalf("stock after a decline: got %d; want %d (released)", g, g0)
	}
	if n := f.cartLines(t, u); n != 1 {
		t.Fatalf("cart after a decline: got %d lines; want it kept", n)
	}
	if n := f.count(t, "catalog", `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'released'`, d.Order.ID); n != 1 {
		t.Fatalf("reservation of the declined order: got %d released; want 1", n)
	}
	// The declined order is in the history; a repeat gives the same answer and charges nothing.
	if again := f.checkout(t, u, "declined", checkoutBody(declinedCard)); again.Status != 422 || again.String() != r.String() {
		t.Fatalf("repeat of a declined checkout: got %d %s; want the same 422", again.Status, again.Body)
	}

	// A card failing Luhn is a 400 before anything happens.
	before := f.count(t, "orders", `SELECT count(*) FROM orders`)
	msg := testkit.WantError(t, f.checkout(t, u, "luhn", checkoutBody("4242424242424241")), 400, "invalid_request")
	if !strings.Contains(msg, "card.number") {
		t.Fatalf("Luhn message %q: want it to name card.number", msg)
	}
	if after := f.count(t, "orders", `SELECT count(*) FROM orders`); after != before {
		t.Fatalf("orders after a Luhn failure: got %d; want %d", after, before)
	}

	// Stock ran short: 409, no order in the history, cart kept, stock untouched.
	if _, err := f.db(t, "catalog").Exec(`UPDATE products SET stock = 1 WHERE id = $1`, grinder); err != nil {
		t.Fatal(err)
	}
	testkit.WantError(t, f.checkout(t, u, "short", checkoutBody(goodCard)), 409, "insufficient_stock")
	if g := f.stock(t, grinder); g != 1 {
		t.Fatalf("stock after a refused order: got %d; want 1", g)
	}
	var hist struct {
		Orders []orderView `json:"orders"`
	}
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders", "", u.Bearer()...).Decode(t, &hist)
	if len(hist.Orders) != 1 || hist.Orders[0].Status != "payment_failed" {
		t.Fatalf("history: got %+v; want only the declined order", hist.Orders)
	}

	// An empty cart is a 409.
	empty := testkit.NewUser(t, f.stack.URL("auth"))
	testkit.WantError(t, f.checkout(t, empty, "nothing", checkoutBody(goodCard)), 409, "cart_empty")
}

// waitStatus polls the order until it leaves pending (bounded) and returns it.
func waitStatus(t *testing.T, f *fixture, u testkit.User, id string, within time.Duration) orderView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var o orderView
		r := testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+id, "", u.Bearer()...)
		r.Decode(t, &o)
		if o.Status != "pending" {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s still pending after %s", id, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls the order until it reaches want (or the time runs out) and returns what it saw last.
func waitFor(t *testing.T, f *fixture, u testkit.User, id, want string, within time.Duration) orderView {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var o orderView
		testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+id, "", u.Bearer()...).Decode(t, &o)
		if o.Status == want || time.Now().After(deadline) {
			return o
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func onlyOrder(t *testing.T, f *fixture, u testkit.User) orderView {
	t.Helper()
	var hist struct {
		Orders []orderView `json:"orders"`
	}
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders", "", u.Bearer()...).Decode(t, &hist)
	if len(hist.Orders) != 1 {
		t.Fatalf("history: got %d orders; want 1", len(hist.Orders))
	}
	return hist.Orders[0]
}

// TestPaymentsUnreachable: with payments down, checkout charges nothing and answers 503; once payments is back,
// the recovery worker ends the order (payment_failed: no charge can be made without the card) and gives the
// stock back; a retry with the same key then gets that final answer and still charges nothing.
func TestPaymentsUnreachable(t *testing.T) {
	f := start(t, map[string]string{"ORDERS_RECOVERY_INTERVAL": "250ms", "ORDERS_RECOVERY_AGE": "1s", "ORDERS_RECOVERY_LEASE": "500ms"})
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0 := f.stock(t, grinder)
	f.add(t, u, grinder, 2)
	if err := f.stack.Services["payments"][0].Stop(); err != nil {
		t.Fatal(err)
	}

	testkit.WantError(t, f.checkout(t, u, "while-down", checkoutBody(goodCard)), 503, "dependency_unavailable")
	o := onlyOrder(t, f, u)
	if o.Status != "pending" || f.stock(t, grinder) != g0-2 {
		t.Fatalf("during the outage: got order %s, stock %d; want pending with the stock reserved", o.Status, f.stock(t, grinder))
	}
	time.Sleep(1500 * time.Millisecond) // recovery tries meanwhile and fails: payments is still down
	if s := waitNotYet(t, f, u, o.ID); s != "pending" {
		t.Fatalf("with payments still down: got %s; want pending", s)
	}

	f.stack.Add(t, "payments", nil)
	final := waitStatus(t, f, u, o.ID, 10*time.Second)
	if final.Status != "payment_failed" {
		t.Fatalf("after recovery: got %s; want payment_failed", final.Status)
	}
	if g := f.stock(t, grinder); g != g0 {
		t.Fatalf("stock after recovery: got %d; want %d", g, g0)
	}
	if n := f.count(t, "payments", `SELECT count(*) FROM payments WHERE status IN ('authorized', 'refunded')`); n != 0 {
		t.Fatalf("charges: got %d; want none", n)
	}
	r := f.checkout(t, u, "while-down", checkoutBody(goodCard))
	testkit.WantError(t, r, 422, "payment_declined")
	if n := f.count(t, "payments", `SELECT count(*) FROM payments WHERE status = 'authorized'`); n != 0 {
		t.Fatalf("charges after the retry: got %d; want none (the order was closed to charges)", n)
	}
	if n := f.cartLines(t, u); n != 1 {
		t.Fatalf("cart: got %d lines; want it kept", n)
	}
}

func waitNotYet(t *testing.T, f *fixture, u testkit.User, id string) string {
	t.Helper()
	var o orderView
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+id, "", u.Bearer()...).Decode(t, &o)
	return o.Status
}

// TestCrashAfterCharge: orders dies between the charge and the confirmation (the request is aborted right
// after the charge is recorded); a restarted orders recovers the order: confirmed, stock committed, cart
// emptied, one payment. The client's retry with the same key gets the confirmed order.
func TestCrashAfterCharge(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0 := f.stock(t, grinder)
	f.add(t, u, grinder, 1)

	crashAfterStep = crashAfterCharge
	t.Cleanup(func() { crashAfterStep = nil })
	req, _ := http.NewRequest("POST", f.orders.URL+"/v1/orders", strings.NewReader(checkoutBody(goodCard)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Idempotency-Key", "crash")
	if resp, err := testkit.HTTPClient(t, req.URL.String()).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("checkout with a crash after the charge: got %d; want the connection dropped", resp.StatusCode)
	}
	crashAfterStep = nil
	o := onlyOrder(t, f, u)
	if o.Status != "pending" || f.count(t, "orders", `SELECT count(*) FROM orders WHERE id = $1 AND step = 'charged'`, o.ID) != 1 {
		t.Fatalf("after the crash: got %s; want pending at step charged", o.Status)
	}

	// The crashed process is gone; a new one recovers on start.
	if err := f.orders.Stop(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ORDERS_RECOVERY_AGE": "0s", "ORDERS_RECOVERY_INTERVAL": "250ms"}
	for k, v := range f.env {
		if _, ok := env[k]; !ok && k != "LISTEN_ADDR" {
			env[k] = v
		}
	}
	f.orders = testkit.Run(t, "orders-2", run, env)
	final := waitStatus(t, f, u, o.ID, 10*time.Second)
	if final.Status != "confirmed" {
		t.Fatalf("after recovery: got %s; want confirmed", final.Status)
	}
	if g := f.stock(t, grinder); g != g0-1 {
		t.Fatalf("stock: got %d; want %d", g, g0-1)
	}
	if n := f.count(t, "catalog", `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'committed'`, o.ID); n != 1 {
		t.Fatalf("reservation: got %d committed; want 1", n)
	}
	if n := f.cartLines(t, u); n != 0 {
		t.Fatalf("cart: got %d lines; want empty", n)
	}
	if n := f.count(t, "payments", `SELECT count(*) FROM payments WHERE order_id = $1`, o.ID); n != 1 {
		t.Fatalf("payments: got %d; want 1", n)
	}
	r := f.checkout(t, u, "crash", checkoutBody(goodCard))
	var again orderView
	r.Decode(t, &again)
	if r.Status != 201 || again.ID != o.ID || again.Status != "confirmed" {
		t.Fatalf("retry after recovery: got %d %s; want 201 with order %s confirmed", r.Status, r.Body, o.ID)
	}
}

// TestPrivacyAndTokens: another user's order is a 404; a logged-out token is refused by every service.
func TestPrivacyAndTokens(t *testing.T) {
	f := start(t, nil)
	ada := testkit.NewUser(t, f.stack.URL("auth"))
	bob := testkit.NewUser(t, f.stack.URL("auth"))
	f.add(t, ada, kettle, 1)
	var o orderView
	f.checkout(t, ada, "k", checkoutBody(goodCard)).Decode(t, &o)

	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+o.ID, "", bob.Bearer()...), 404, "not_found")
	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/orders/ord_doesnotexist", "", ada.Bearer()...), 404, "not_found")
	var hist struct {
		Orders []orderView `json:"orders"`
	}
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders", "", bob.Bearer()...).Decode(t, &hist)
	if len(hist.Orders) != 0 {
		t.Fatalf("bob's history: got %d orders; want 0", len(hist.Orders))
	}

	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/orders", ""), 401, "missing_token")
	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/orders", "", "Authorization", "Bearer x.y.z"), 401, "invalid_token")
	if r := testkit.Call(t, "DELETE", f.stack.URL("auth")+"/v1/sessions/current", "", ada.Bearer()...); r.Status != 204 {
		t.Fatalf("logout: got %d", r.Status)
	}
	for _, c := range []struct{ method, url string }{
		{"GET", f.stack.URL("auth") + "/v1/users/me"},
		{"GET", f.stack.URL("cart") + "/v1/cart"},
		{"GET", f.orders.URL + "/v1/orders"},
		{"GET", f.orders.URL + "/v1/orders/" + o.ID},
	} {
		testkit.WantError(t, testkit.Call(t, c.method, c.url, "", ada.Bearer()...), 401, "token_revoked")
	}
	testkit.WantError(t, f.checkout(t, ada, "k2", checkoutBody(goodCard)), 401, "token_revoked")
}

func TestCheckoutBadInput(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	f.add(t, u, kettle, 1)
	good := checkoutBody(goodCard)
	tests := []struct {
		name, key, body string
		status          int
		code, field     string
	}{
		{"no key", "", good, 400, "invalid_request", "Idempotency-Key"},
		{"key too long", strings.Repeat("k", 65), good, 400, "invalid_request", "Idempotency-Key"},
		{"key with space", "a key", good, 400, "invalid_request", "Idempotency-Key"},
		{"no address", "k", `{"card":{"number":"4242424242424242","exp_month":1,"exp_year":2031,"cvc":"123"}}`, 400, "invalid_request", "shipping_address.name"},
		{"no city", "k", strings.Replace(good, `"city":"London",`, "", 1), 400, "invalid_request", "shipping_address.city"},
		{"bad country", "k", strings.Replace(good, `"GB"`, `"Britain"`, 1), 400, "invalid_request", "shipping_address.country"},
		{"bad month", "k", strings.Replace(good, `"exp_month":12`, `"exp_month":13`, 1), 400, "invalid_request", "card.exp_month"},
		{"total from the client", "k", strings.Replace(good, `"card"`, `"total_cents":1,"card"`, 1), 400, "invalid_request", "total_cents"},
		{"malformed", "k", `{"shipping_address":`, 400, "invalid_request", "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, f.checkout(t, u, tc.key, tc.body), tc.status, tc.code)
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}
	testkit.WantError(t, testkit.Call(t, "POST", f.orders.URL+"/v1/orders", good, append(u.Bearer(), "Idempotency-Key", "k", "Content-Type", "text/plain")...), 415, "unsupported_media_type")
	testkit.WantError(t, f.checkout(t, u, "k", `{"x":"`+strings.Repeat("y", 1<<20)+`"}`), 413, "body_too_large")
	if n := f.count(t, "orders", `SELECT count(*) FROM orders`); n != 0 {
		t.Fatalf("orders after bad requests: got %d; want 0", n)
	}
	if n := f.cartLines(t, u); n != 1 {
		t.Fatalf("cart after bad requests: got %d lines; want 1", n)
	}
}
