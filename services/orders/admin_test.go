package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

func (f *fixture) place(t *testing.T, u testkit.User, product string, qty int, card string) orderView {
	t.Helper()
	f.add(t, u, product, qty)
	r := f.checkout(t, u, fmt.Sprintf("k-%d", time.Now().UnixNano()), checkoutBody(card))
	var o orderView
	if r.Status == 422 {
		var d declined
		r.Decode(t, &d)
		return d.Order
	}
	if r.Status != 201 {
		t.Fatalf("checkout: got %d %s", r.Status, r.Body)
	}
	r.Decode(t, &o)
	return o
}

func (f *fixture) cancel(t *testing.T, u testkit.User, id string) testkit.Resp {
	t.Helper()
	return testkit.Call(t, "POST", f.orders.URL+"/v1/orders/"+id+"/cancel", "", u.Bearer()...)
}

func (f *fixture) refunds(t *testing.T, orderID string) int {
	t.Helper()
	return f.count(t, "payments", `SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'refunded'`, orderID)
}

// TestCancelOrder: the owner cancels a confirmed order: refunded, stock returned, status cancelled; asking
// again changes nothing; another customer gets 404; an admin cancels anyone's order; a payment_failed order
// is 409 not_cancellable.
func TestCancelOrder(t *testing.T) {
	f := start(t, nil)
	ada, bob := testkit.NewUser(t, f.stack.URL("auth")), testkit.NewUser(t, f.stack.URL("auth"))
	admin := f.stack.NewAdmin(t)
	g0 := f.stock(t, grinder)
	o := f.place(t, ada, grinder, 2, goodCard)
	if f.stock(t, grinder) != g0-2 {
		t.Fatalf("stock after the order: got %d; want %d", f.stock(t, grinder), g0-2)
	}
	testkit.WantError(t, f.cancel(t, bob, o.ID), 404, "not_found")
	testkit.WantError(t, testkit.Call(t, "POST", f.orders.URL+"/v1/orders/"+o.ID+"/cancel", ""), 401, "missing_token")
	for range 2 {
		r := f.cancel(t, ada, o.ID)
		var got orderView
		r.Decode(t, &got)
		if r.Status != 200 || got.Status != "cancelled" || got.ID != o.ID || got.TotalCents != o.TotalCents {
			t.Fatalf("cancel: got %d %s; want 200 with the order cancelled", r.Status, r.Body)
		}
	}
	if n := f.refunds(t, o.ID); n != 1 {
		t.Fatalf("refunds: got %d; want 1", n)
	}
	if g := f.stock(t, grinder); g != g0 {
		t.Fatalf("stock after cancelling: got %d; want %d (returned once)", g, g0)
	}
	if s := onlyOrder(t, f, ada).Status; s != "cancelled" {
		t.Fatalf("history: got %s; want cancelled", s)
	}

	other := f.place(t, bob, kettle, 1, goodCard)
	if r := f.cancel(t, admin, other.ID); r.Status != 200 || !strings.Contains(r.String(), `"cancelled"`) {
		t.Fatalf("admin cancels bob's order: got %d %s; want 200 cancelled", r.Status, r.Body)
	}
	if n := f.count(t, "orders", `SELECT count(*) FROM orders WHERE id = $1 AND cancelled_by = $2 AND cancelled_at IS NOT NULL`, other.ID, admin.ID); n != 1 {
		t.Fatalf("cancelled_by: want the admin recorded")
	}
	failed := f.place(t, ada, kettle, 1, declinedCard)
	testkit.WantError(t, f.cancel(t, ada, failed.ID), 409, "not_cancellable")
}

// TestConcurrentCancels: 20 concurrent cancels of one order: all answer the cancelled order, one refund, the
// stock returned once.
func TestConcurrentCancels(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	k0 := f.stock(t, kettle)
	o := f.place(t, u, kettle, 3, goodCard)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.cancel(t, u, o.ID)
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 20 {
		t.Fatalf("20 concurrent cancels: got %v; want 20 × 200", statuses)
	}
	if n := f.refunds(t, o.ID); n != 1 {
		t.Fatalf("refunds: got %d; want 1", n)
	}
	if k := f.stock(t, kettle); k != k0 {
		t.Fatalf("stock: got %d; want %d (returned once)", k, k0)
	}
	if n := f.count(t, "catalog", `SELECT count(*) FROM reservations WHERE order_id = $1 AND status = 'returned'`, o.ID); n != 1 {
		t.Fatalf("reservation: want it returned")
	}
}

// TestCrashDuringCancel: orders dies between the refund and the stock return; the recovery worker of a new
// process finishes it: cancelled, one refund, stock returned once.
func TestCrashDuringCancel(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	g0 := f.stock(t, grinder)
	o := f.place(t, u, grinder, 1, goodCard)

	crashAfterStep = func(o order, from string, _ bool) {
		if from == stepCancelling && o.Step == stepRefunded {
			panic(http.ErrAbortHandler)
		}
	}
	t.Cleanup(func() { crashAfterStep = nil })
	req, _ := http.NewRequest("POST", f.orders.URL+"/v1/orders/"+o.ID+"/cancel", nil)
	req.Header.Set("Authorization", "Bearer "+u.Token)
	if resp, err := testkit.HTTPClient(t, req.URL.String()).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cancel with a crash after the refund: got %d; want the connection dropped", resp.StatusCode)
	}
	crashAfterStep = nil
	if n := f.count(t, "orders", `SELECT count(*) FROM orders WHERE id = $1 AND step = 'refunded' AND status = 'confirmed'`, o.ID); n != 1 {
		t.Fatal("after the crash: want the order refunded, its stock not yet returned")
	}
	if g := f.stock(t, grinder); g != g0-1 {
		t.Fatalf("stock right after the crash: got %d; want %d (not yet returned)", g, g0-1)
	}

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
	if final := waitFor(t, f, u, o.ID, "cancelled", 10*time.Second); final.Status != "cancelled" {
		t.Fatalf("after recovery: got %s; want cancelled", final.Status)
	}
	if n := f.refunds(t, o.ID); n != 1 {
		t.Fatalf("refunds: got %d; want 1", n)
	}
	if g := f.stock(t, grinder); g != g0 {
		t.Fatalf("stock after recovery: got %d; want %d", g, g0)
	}
}

// TestAdminOrders: every user's orders for admins, newest first, by pages and by status; customers are refused.
func TestAdminOrders(t *testing.T) {
	f := start(t, nil)
	ada, bob := testkit.NewUser(t, f.stack.URL("auth")), testkit.NewUser(t, f.stack.URL("auth"))
	admin := f.stack.NewAdmin(t)
	var placed []string
	for i := range 5 {
		u := ada
		if i%2 == 1 {
			u = bob
		}
		card := goodCard
		if i == 2 {
			card = declinedCard
		}
		placed = append(placed, f.place(t, u, kettle, 1, card).ID)
	}
	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/admin/orders", "", ada.Bearer()...), 403, "forbidden")
	testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/admin/orders", ""), 401, "missing_token")

	type page struct {
		Orders []struct {
			orderView
			UserID string `json:"user_id"`
		} `json:"orders"`
		NextCursor *string `json:"next_cursor"`
	}
	var seen []string
	cursor := ""
	for range 5 {
		var p page
		r := testkit.Call(t, "GET", f.orders.URL+"/v1/admin/orders?limit=2"+cursor, "", admin.Bearer()...)
		if r.Status != 200 {
			t.Fatalf("admin orders: got %d %s", r.Status, r.Body)
		}
		r.Decode(t, &p)
		for _, o := range p.Orders {
			if o.UserID != ada.ID && o.UserID != bob.ID {
				t.Fatalf("order %s: user_id %q; want ada's or bob's", o.ID, o.UserID)
			}
			seen = append(seen, o.ID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = "&cursor=" + *p.NextCursor
	}
	if len(seen) != 5 {
		t.Fatalf("admin orders by pages of 2: got %v; want all 5", seen)
	}
	for i := range seen {
		if seen[i] != placed[len(placed)-1-i] {
			t.Fatalf("order of the list: got %v; want newest first %v", seen, placed)
		}
	}
	var failed page
	testkit.Call(t, "GET", f.orders.URL+"/v1/admin/orders?status=payment_failed", "", admin.Bearer()...).Decode(t, &failed)
	if len(failed.Orders) != 1 || failed.Orders[0].ID != placed[2] || failed.Orders[0].Status != "payment_failed" {
		t.Fatalf("status filter: got %+v; want the one declined order", failed.Orders)
	}
	for _, q := range []string{"status=shipped", "limit=0", "limit=101", "cursor=%%%", "cursor=bm9wZQ"} {
		testkit.WantError(t, testkit.Call(t, "GET", f.orders.URL+"/v1/admin/orders?"+q, "", admin.Bearer()...), 400, "invalid_request")
	}
}

// TestCatalogChangesKeepPlacedOrders: a price change leaves placed orders at the price they were placed at;
// an archived product is refused at checkout (409) and the orders that hold it stay as they were.
func TestCatalogChangesKeepPlacedOrders(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	admin := f.stack.NewAdmin(t)
	o := f.place(t, u, grinder, 1, goodCard)
	catalog := f.stack.URL("catalog")
	if r := testkit.Call(t, "PATCH", catalog+"/v1/products/"+grinder, `{"price_cents":9900}`, admin.Bearer()...); r.Status != 200 {
		t.Fatalf("price change: got %d %s", r.Status, r.Body)
	}
	var got orderView
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+o.ID, "", u.Bearer()...).Decode(t, &got)
	if got.Items[0].UnitPriceCents != 8900 || got.TotalCents != 8900 {
		t.Fatalf("placed order after a price change: got %+v; want it at 8900", got)
	}
	second := f.place(t, u, grinder, 1, goodCard)
	if second.TotalCents != 9900 {
		t.Fatalf("a new order: got %d; want the new price 9900", second.TotalCents)
	}

	f.add(t, u, kettle, 1)
	if r := testkit.Call(t, "DELETE", catalog+"/v1/products/"+kettle, "", admin.Bearer()...); r.Status != 204 {
		t.Fatalf("archive: got %d %s", r.Status, r.Body)
	}
	testkit.WantError(t, f.checkout(t, u, "with-archived", checkoutBody(goodCard)), 409, "product_unavailable")
	testkit.Call(t, "GET", f.orders.URL+"/v1/orders/"+o.ID, "", u.Bearer()...).Decode(t, &got)
	if got.Status != "confirmed" || len(got.Items) != 1 {
		t.Fatalf("old order after archiving: got %+v; want it unchanged", got)
	}
}
