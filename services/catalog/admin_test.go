package main

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

// adminFixture is auth and cart as binaries and catalog in-process, in one Consul agent, with an admin and a
// customer.
type adminFixture struct {
	st       *testkit.Stack
	catalog  *testkit.Service
	db       *sql.DB
	admin    testkit.User
	customer testkit.User
}

func startAdminFixture(t *testing.T, withCart bool) *adminFixture {
	t.Helper()
	names := []string{"auth"}
	if withCart {
		names = append(names, "cart")
	}
	st := testkit.StartStack(t, names...)
	env := st.Env(t, "catalog")
	env["SERVICE_ID"] = "catalog-1"
	f := &adminFixture{st: st, catalog: testkit.Run(t, "catalog", run, env)}
	st.WaitPassing(t, "catalog", "catalog-1", 10*time.Second)
	db, err := sql.Open("postgres", st.DSN["catalog"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	f.admin = st.NewAdmin(t)
	f.customer = testkit.NewUser(t, st.URL("auth"))
	return f
}

func (f *adminFixture) call(t *testing.T, u *testkit.User, method, path, body string, headers ...string) testkit.Resp {
	t.Helper()
	if u != nil {
		headers = append(headers, u.Bearer()...)
	}
	return testkit.Call(t, method, f.catalog.URL+path, body, headers...)
}

func newProductBody(sku string, stock int) string {
	return fmt.Sprintf(`{"sku":%q,"name":"Moka Pot %s","description":"Stovetop espresso for three cups.","category":"coffee","price_cents":3400,"currency":"EUR","stock":%d}`,
		sku, sku, stock)
}

func (f *adminFixture) create(t *testing.T, sku string, stock int) product {
	t.Helper()
	r := f.call(t, &f.admin, "POST", "/v1/products", newProductBody(sku, stock))
	if r.Status != 201 {
		t.Fatalf("create %s: got %d %s; want 201", sku, r.Status, r.Body)
	}
	var p product
	r.Decode(t, &p)
	return p
}

// TestAdminEndpointsNeedTheRole: every operator call is 401 without a token, 403 forbidden with a customer's,
// and succeeds with an admin's.
func TestAdminEndpointsNeedTheRole(t *testing.T) {
	f := startAdminFixture(t, false)
	p := f.create(t, "ROLE-1", 5)
	calls := []struct {
		method, path, body string
		headers            []string
		ok                 int
	}{
		{"POST", "/v1/products", newProductBody("ROLE-2", 1), nil, 201},
		{"PATCH", "/v1/products/" + p.ID, `{"price_cents":3500}`, nil, 200},
		{"POST", "/v1/products/" + p.ID + "/stock-adjustments", `{"delta":3,"reason":"delivery"}`, []string{"Idempotency-Key", "role-k1"}, 200},
		{"DELETE", "/v1/products/" + p.ID, "", nil, 204},
	}
	for _, c := range calls {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			testkit.WantError(t, f.call(t, nil, c.method, c.path, c.body, c.headers...), 401, "missing_token")
			testkit.WantError(t, f.call(t, &f.customer, c.method, c.path, c.body, c.headers...), 403, "forbidden")
			if r := f.call(t, &f.admin, c.method, c.path, c.body, c.headers...); r.Status != c.ok {
				t.Fatalf("admin: got %d %s; want %d", r.Status, r.Body, c.ok)
			}
		})
	}
}

// TestProductLifecycle: a new product is listed and searchable; a duplicate sku is 409; bad fields are 400s
// naming the field and store nothing; an edit changes the product; an archived product leaves lists, search
// and categories but still answers by id, with archived true, and cannot go into a cart.
func TestProductLifecycle(t *testing.T) {
	f := startAdminFixture(t, true)
	p := f.create(t, "MOKA-3", 12)
	if p.Currency != "EUR" || p.Stock != 12 || p.Archived || !strings.HasPrefix(p.ID, "prd_") {
		t.Fatalf("created: got %+v", p)
	}
	if got := list(t, f.catalog.URL, "q=moka"); len(got.Products) != 1 || got.Products[0].ID != p.ID {
		t.Fatalf("search for the new product: got %+v; want it", got.Products)
	}
	testkit.WantError(t, f.call(t, &f.admin, "POST", "/v1/products", newProductBody("MOKA-3", 1)), 409, "sku_taken")

	var before int
	_ = f.db.QueryRow(`SELECT count(*) FROM products`).Scan(&before)
	bad := []struct{ name, body, field string }{
		{"price zero", strings.Replace(newProductBody("B-1", 1), `"price_cents":3400`, `"price_cents":0`, 1), "price_cents"},
		{"negative stock", newProductBody("B-2", -1), "stock"},
		{"lower-case currency", strings.Replace(newProductBody("B-3", 1), `"EUR"`, `"eur"`, 1), "currency"},
		{"not a currency", strings.Replace(newProductBody("B-4", 1), `"EUR"`, `"ZZZ"`, 1), "currency"},
		{"no name", strings.Replace(newProductBody("B-5", 1), `"name":"Moka Pot B-5"`, `"name":""`, 1), "name"},
		{"bad sku", newProductBody("no spaces please", 1), "sku"},
		{"no category", strings.Replace(newProductBody("B-6", 1), `"category":"coffee"`, `"category":" "`, 1), "category"},
		{"unknown field", strings.Replace(newProductBody("B-7", 1), `"stock"`, `"archived":true,"stock"`, 1), "archived"},
	}
	for _, tc := range bad {
		msg := testkit.WantError(t, f.call(t, &f.admin, "POST", "/v1/products", tc.body), 400, "invalid_request")
		if !strings.Contains(msg, tc.field) {
			t.Errorf("%s: message %q; want it to name %s", tc.name, msg, tc.field)
		}
	}
	var after int
	_ = f.db.QueryRow(`SELECT count(*) FROM products`).Scan(&after)
	if after != before {
		t.Fatalf("products after bad requests: got %d; want %d", after, before)
	}

	r := f.call(t, &f.admin, "PATCH", "/v1/products/"+p.ID, `{"name":"Moka Pot, 3 cups","price_cents":3900}`)
	var edited product
	r.Decode(t, &edited)
	if r.Status != 200 || edited.Name != "Moka Pot, 3 cups" || edited.PriceCents != 3900 || edited.Stock != 12 || edited.SKU != "MOKA-3" {
		t.Fatalf("edit: got %d %+v", r.Status, edited)
	}
	testkit.WantError(t, f.call(t, &f.admin, "PATCH", "/v1/products/"+p.ID, `{}`), 400, "invalid_request")
	testkit.WantError(t, f.call(t, &f.admin, "PATCH", "/v1/products/"+p.ID, `{"stock":99}`), 400, "invalid_request")
	testkit.WantError(t, f.call(t, &f.admin, "PATCH", "/v1/products/prd_nope", `{"name":"x"}`), 404, "not_found")

	if r := f.call(t, &f.admin, "DELETE", "/v1/products/"+p.ID, ""); r.Status != 204 {
		t.Fatalf("archive: got %d %s", r.Status, r.Body)
	}
	if r := f.call(t, &f.admin, "DELETE", "/v1/products/"+p.ID, ""); r.Status != 204 {
		t.Fatalf("archive again: got %d; want 204", r.Status)
	}
	if got := list(t, f.catalog.URL, "q=moka"); len(got.Products) != 0 {
		t.Fatalf("search after archiving: got %+v; want nothing", got.Products)
	}
	for _, p2 := range list(t, f.catalog.URL, "limit=100").Products {
		if p2.ID == p.ID {
			t.Fatal("the archived product is still listed")
		}
	}
	var got product
	testkit.Call(t, "GET", f.catalog.URL+"/v1/products/"+p.ID, "").Decode(t, &got)
	if !got.Archived || got.Name != "Moka Pot, 3 cups" {
		t.Fatalf("archived product by id: got %+v; want it, archived", got)
	}
	r = testkit.Call(t, "PUT", f.st.URL("cart")+"/v1/cart/items/"+p.ID, `{"quantity":1}`, f.customer.Bearer()...)
	testkit.WantError(t, r, 404, "")
	testkit.WantError(t, f.call(t, &f.admin, "DELETE", "/v1/products/prd_nope", ""), 404, "not_found")
}

// TestStockAdjustments: 50 concurrent adjustments of -1 on a stock of 10 leave exactly 10 applied and stock 0,
// the rest 409; the same key twice applies once; the same key for another change is 409; every adjustment is
// recorded with who, how much and why.
func TestStockAdjustments(t *testing.T) {
	f := startAdminFixture(t, false)
	p := f.create(t, "STOCK-1", 10)
	path := "/v1/products/" + p.ID + "/stock-adjustments"
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.call(t, &f.admin, "POST", path, `{"delta":-1,"reason":"sold at the market"}`, "Idempotency-Key", fmt.Sprintf("market-%d", i))
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
			if r.Status == 409 {
				testkit.WantError(t, r, 409, "insufficient_stock")
			}
		}()
	}
	wg.Wait()
	if statuses[200] != 10 || statuses[409] != 40 {
		t.Fatalf("50 concurrent -1 on a stock of 10: got %v; want 10 × 200 and 40 × 409", statuses)
	}
	if s := f.stockOf(t, p.ID); s != 0 {
		t.Fatalf("stock: got %d; want 0", s)
	}

	for range 2 {
		r := f.call(t, &f.admin, "POST", path, `{"delta":25,"reason":"delivery from the roaster"}`, "Idempotency-Key", "delivery-7")
		var got product
		r.Decode(t, &got)
		if r.Status != 200 || got.Stock != 25 {
			t.Fatalf("restock (and its repeat): got %d %+v; want 200 with stock 25", r.Status, got)
		}
	}
	testkit.WantError(t, f.call(t, &f.admin, "POST", path, `{"delta":30,"reason":"delivery from the roaster"}`, "Idempotency-Key", "delivery-7"),
		409, "idempotency_key_reused")
	testkit.WantError(t, f.call(t, &f.admin, "POST", path, `{"delta":-26,"reason":"breakage"}`, "Idempotency-Key", "oops"), 409, "insufficient_stock")
	testkit.WantError(t, f.call(t, &f.admin, "POST", path, `{"delta":0,"reason":"nothing"}`, "Idempotency-Key", "z"), 400, "invalid_request")
	testkit.WantError(t, f.call(t, &f.admin, "POST", path, `{"delta":1,"reason":""}`, "Idempotency-Key", "z"), 400, "invalid_request")
	testkit.WantError(t, f.call(t, &f.admin, "POST", path, `{"delta":1,"reason":"x"}`), 400, "invalid_request")
	testkit.WantError(t, f.call(t, &f.admin, "POST", "/v1/products/prd_nope/stock-adjustments", `{"delta":1,"reason":"x"}`, "Idempotency-Key", "z"), 404, "not_found")
	if s := f.stockOf(t, p.ID); s != 25 {
		t.Fatalf("stock after refused adjustments: got %d; want 25", s)
	}
	var n, sum int
	var actor string
	if err := f.db.QueryRow(`SELECT count(*), sum(delta), min(actor) FROM stock_adjustments WHERE product_id = $1`, p.ID).Scan(&n, &sum, &actor); err != nil {
		t.Fatal(err)
	}
	if n != 11 || sum != 15 || actor != f.admin.ID {
		t.Fatalf("recorded adjustments: got %d summing %d by %s; want 11 summing 15 by the admin %s", n, sum, actor, f.admin.ID)
	}
}

func (f *adminFixture) stockOf(t *testing.T, id string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(`SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
