package main

import (
	"strings"
	"testing"

	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const (
	grinder = "prd_01hx4kq2m3coffeegrinder"
	kettle  = "prd_01hx4kq2m3kettle000004"
	daypack = "prd_01hx4kq2m3daypack00016"
)

type fixture struct {
	stack *testkit.Stack
	cart  *testkit.Service
}

func start(t *testing.T) fixture {
	t.Helper()
	st := testkit.StartStack(t, "auth", "catalog")
	svc := testkit.Run(t, "cart", run, st.Env(t, "cart"))
	return fixture{stack: st, cart: svc}
}

func getCart(t *testing.T, f fixture, u testkit.User) cart {
	t.Helper()
	r := testkit.Call(t, "GET", f.cart.URL+"/v1/cart", "", u.Bearer()...)
	if r.Status != 200 {
		t.Fatalf("get cart: got %d %s", r.Status, r.Body)
	}
	var c cart
	r.Decode(t, &c)
	return c
}

func setItem(t *testing.T, f fixture, u testkit.User, product string, qty int) testkit.Resp {
	t.Helper()
	return testkit.Call(t, "PUT", f.cart.URL+"/v1/cart/items/"+product, testkit.JSON(t, map[string]int{"quantity": qty}), u.Bearer()...)
}

func TestCart(t *testing.T) {
	f := start(t)
	ada := testkit.NewUser(t, f.stack.URL("auth"))
	bob := testkit.NewUser(t, f.stack.URL("auth"))

	if c := getCart(t, f, ada); len(c.Items) != 0 || c.TotalCents != 0 || c.Currency != "USD" {
		t.Fatalf("new cart: got %+v; want empty, 0 USD", c)
	}
	if r := setItem(t, f, ada, grinder, 2); r.Status != 200 {
		t.Fatalf("set grinder: got %d %s", r.Status, r.Body)
	}
	setItem(t, f, ada, kettle, 1)
	setItem(t, f, ada, grinder, 1) // sets, not adds
	c := getCart(t, f, ada)
	if len(c.Items) != 2 || c.TotalCents != 8900+4500 {
		t.Fatalf("cart: got %+v; want grinder ×1 and kettle ×1, total 13400", c)
	}
	for _, it := range c.Items {
		if it.Name == "" || it.UnitPriceCents == 0 || it.Currency != "USD" {
			t.Fatalf("item %+v: want name and price copied from catalog", it)
		}
	}
	// Bob's cart is his own.
	if c := getCart(t, f, bob); len(c.Items) != 0 {
		t.Fatalf("bob's cart: got %+v; want empty", c)
	}

	r := testkit.Call(t, "DELETE", f.cart.URL+"/v1/cart/items/"+kettle, "", ada.Bearer()...)
	if r.Status != 200 || len(getCart(t, f, ada).Items) != 1 {
		t.Fatalf("delete item: got %d %s", r.Status, r.Body)
	}
	testkit.WantError(t, testkit.Call(t, "DELETE", f.cart.URL+"/v1/cart/items/"+kettle, "", ada.Bearer()...), 404, "not_found")
	if r := testkit.Call(t, "DELETE", f.cart.URL+"/v1/cart", "", ada.Bearer()...); r.Status != 204 || len(getCart(t, f, ada).Items) != 0 {
		t.Fatalf("clear: got %d; want 204 and an empty cart", r.Status)
	}

	// The internal endpoints orders uses.
	setItem(t, f, ada, grinder, 1)
	setItem(t, f, ada, daypack, 1)
	r = testkit.CallAs(t, "orders", "GET", f.cart.URL+"/internal/v1/carts/"+ada.ID, "")
	var ic cart
	r.Decode(t, &ic)
	if len(ic.Items) != 2 {
		t.Fatalf("internal cart: got %s", r.Body)
	}
	for _, want := range []int{1, 0} { // removing again changes nothing
		r = testkit.CallAs(t, "orders", "POST", f.cart.URL+"/internal/v1/carts/"+ada.ID+"/remove", `{"product_ids":["`+grinder+`"]}`)
		var removed struct{ Removed *int }
		r.Decode(t, &removed)
		if r.Status != 200 || removed.Removed == nil || *removed.Removed != want {
			t.Fatalf("remove ordered items: got %d %s; want 200 {\"removed\":%d}", r.Status, r.Body, want)
		}
	}
	r = testkit.CallAs(t, "orders", "GET", f.cart.URL+"/internal/v1/carts/"+ada.ID, "")
	ic = cart{}
	r.Decode(t, &ic)
	if len(ic.Items) != 1 || ic.Items[0].ProductID != daypack {
		t.Fatalf("cart after removing ordered items: got %s; want only the daypack left", r.Body)
	}
}

func TestCartBadInput(t *testing.T) {
	f := start(t)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	setItem(t, f, u, grinder, 1)
	tests := []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"zero quantity", "PUT", "/v1/cart/items/" + grinder, `{"quantity":0}`, 400, "invalid_request", "quantity"},
		{"100 of one", "PUT", "/v1/cart/items/" + grinder, `{"quantity":100}`, 400, "invalid_request", "quantity"},
		{"quantity as text", "PUT", "/v1/cart/items/" + grinder, `{"quantity":"2"}`, 400, "invalid_request", "quantity"},
		{"unknown field", "PUT", "/v1/cart/items/" + grinder, `{"quantity":1,"price_cents":1}`, 400, "invalid_request", "price_cents"},
		{"malformed", "PUT", "/v1/cart/items/" + grinder, `{"quantity":`, 400, "invalid_request", "malformed"},
		{"unknown product", "PUT", "/v1/cart/items/prd_nope", `{"quantity":1}`, 404, "product_not_found", "product"},
		{"more than in stock", "PUT", "/v1/cart/items/" + daypack, `{"quantity":99}`, 409, "insufficient_stock", "stock"},
		{"remove without ids", "POST", "/internal/v1/carts/" + u.ID + "/remove", `{"product_ids":[]}`, 400, "invalid_request", "product_ids"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, testkit.CallAs(t, "orders", tc.method, f.cart.URL+tc.path, tc.body, u.Bearer()...), tc.status, tc.code)
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}
	testkit.WantError(t, testkit.Call(t, "PUT", f.cart.URL+"/v1/cart/items/"+grinder, `{"quantity":1}`, append(u.Bearer(), "Content-Type", "text/plain")...), 415, "unsupported_media_type")
	if c := getCart(t, f, u); len(c.Items) != 1 || c.Items[0].Quantity != 1 {
		t.Fatalf("cart after bad requests: got %+v; want the one grinder unchanged", c)
	}
}

// TestCartTokens: a cart needs a valid, live token; logging out ends access at once.
func TestCartTokens(t *testing.T) {
	f := start(t)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	for _, tc := range []struct {
		name   string
		header []string
		code   string
	}{
		{"missing", nil, "missing_token"},
		{"garbled", []string{"Authorization", "Bearer abc.def.ghi"}, "invalid_token"},
		{"wrong scheme", []string{"Authorization", "Token " + u.Token}, "missing_token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testkit.WantError(t, testkit.Call(t, "GET", f.cart.URL+"/v1/cart", "", tc.header...), 401, tc.code)
		})
	}
	getCart(t, f, u)
	if r := testkit.Call(t, "DELETE", f.stack.URL("auth")+"/v1/sessions/current", "", u.Bearer()...); r.Status != 204 {
		t.Fatalf("logout: got %d", r.Status)
	}
	testkit.WantError(t, testkit.Call(t, "GET", f.cart.URL+"/v1/cart", "", u.Bearer()...), 401, "token_revoked")
	testkit.WantError(t, setItem(t, f, u, grinder, 1), 401, "token_revoked")
}

// TestCatalogDown: with no catalog instance, setting an item is a 503, and the cart is unchanged.
func TestCatalogDown(t *testing.T) {
	f := start(t)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	setItem(t, f, u, grinder, 1)
	if err := f.stack.Services["catalog"][0].Stop(); err != nil {
		t.Fatal(err)
	}
	testkit.WantError(t, setItem(t, f, u, kettle, 1), 503, "dependency_unavailable")
	if c := getCart(t, f, u); len(c.Items) != 1 {
		t.Fatalf("cart with catalog down: got %+v; want the grinder only", c)
	}
}

// TestInternalRoutesNameTheirCallers: cart's internal routes answer orders alone; the front, which the mesh lets
// call cart's public routes, may neither read nor empty anybody's cart through them (issue 28 §5).
func TestInternalRoutesNameTheirCallers(t *testing.T) {
	f := start(t)
	testkit.WantInternalCallers(t, "cart", f.cart.URL, "GET /internal/v1/carts/usr_1", "POST /internal/v1/carts/usr_1/remove")
}
