package main

import (
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type catalogUnderTest struct {
	*testkit.Service
	db *sql.DB
}

func startCatalog(t *testing.T) *catalogUnderTest {
	t.Helper()
	dsn := testkit.NewDatabase(t)
	svc := testkit.Run(t, "catalog", run, map[string]string{"DATABASE_URL": dsn, "CONSUL_HTTP_ADDR": testkit.SharedConsul(t).HTTPAddr})
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &catalogUnderTest{Service: svc, db: db}
}

func (c *catalogUnderTest) stock(t *testing.T, id string) int {
	t.Helper()
	var n int
	if err := c.db.QueryRow(`SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type listAnswer struct {
	Products   []product `json:"products"`
	NextCursor *string   `json:"next_cursor"`
}

func list(t *testing.T, base, query string) listAnswer {
	t.Helper()
	r := testkit.Call(t, "GET", base+"/v1/products?"+query, "")
	if r.Status != 200 {
		t.Fatalf("list ?%s: got %d %s; want 200", query, r.Status, r.Body)
	}
	var a listAnswer
	r.Decode(t, &a)
	return a
}

func TestSeededCatalog(t *testing.T) {
	c := startCatalog(t)
	first := list(t, c.URL, "")
	if len(first.Products) != defaultLimit || first.NextCursor != nil {
		// 16 products fit on one default page of 20.
		if len(first.Products) < 12 {
			t.Fatalf("first page: got %d products; want the seeded ≥ 12", len(first.Products))
		}
	}
	var cats struct {
		Categories []string `json:"categories"`
	}
	testkit.Call(t, "GET", c.URL+"/v1/categories", "").Decode(t, &cats)
	if len(cats.Categories) < 3 {
		t.Fatalf("categories: got %v; want at least 3", cats.Categories)
	}
	for _, p := range first.Products {
		if p.ID == "" || p.SKU == "" || p.Name == "" || p.Description == "" || p.Category == "" || p.PriceCents <= 0 || p.Currency != "USD" || p.Stock <= 0 {
			t.Fatalf("product %+v: want every field set", p)
		}
	}
	got := testkit.Call(t, "GET", c.URL+"/v1/products/"+first.Products[0].ID, "")
	var p product
	got.Decode(t, &p)
	if got.Status != 200 || p != first.Products[0] {
		t.Fatalf("product by id: got %d %+v; want %+v", got.Status, p, first.Products[0])
	}
}

func TestPagination(t *testing.T) {
	c := startCatalog(t)
	all := list(t, c.URL, "limit=100").Products
	seen := map[string]bool{}
	var walked []product
	query := "limit=5"
	for page := 0; page < 10; page++ {
		a := list(t, c.URL, query)
		walked = append(walked, a.Products...)
		for _, p := range a.Products {
			if seen[p.ID] {
				t.Fatalf("product %s on two pages", p.ID)
			}
			seen[p.ID] = true
		}
		if a.NextCursor == nil {
			break
		}
		query = "limit=5&cursor=" + url.QueryEscape(*a.NextCursor)
	}
	if len(walked) != len(all) {
		t.Fatalf("walked %d products in pages of 5; want all %d", len(walked), len(all))
	}
	for i := range all {
		if walked[i].ID != all[i].ID {
			t.Fatalf("page order differs at %d: got %s; want %s", i, walked[i].ID, all[i].ID)
		}
	}
}

func TestSearchAndFilter(t *testing.T) {
	c := startCatalog(t)
	total := len(list(t, c.URL, "limit=100").Products)
	tests := []struct {
		query string
		want  func([]product) error
	}{
		{"q=grinder", func(ps []product) error { return names(ps, "Burr Coffee Grinder") }},
		{"q=GRINDER", func(ps []product) error { return names(ps, "Burr Coffee Grinder") }},
		{"q=" + url.QueryEscape("crema"), func(ps []product) error { return names(ps, "Espresso Cup Set") }},
		{"category=books&limit=100", func(ps []product) error { return allIn(ps, "books", 4) }},
		{"category=books&q=go", func(ps []product) error { return names(ps, "The Go Programming Language") }},
		{"category=nonexistent", func(ps []product) error { return count(ps, 0) }},
		// SQL and LIKE metacharacters are matched literally, never interpreted.
		{"q=" + url.QueryEscape("%"), func(ps []product) error { return count(ps, 0) }},
		{"q=" + url.QueryEscape("_"), func(ps []product) error { return count(ps, 0) }},
		{"q=" + url.QueryEscape(`\`), func(ps []product) error { return count(ps, 0) }},
		{"q=" + url.QueryEscape("'; DROP TABLE products; --"), func(ps []product) error { return count(ps, 0) }},
		{"q=" + url.QueryEscape("' OR '1'='1"), func(ps []product) error { return count(ps, 0) }},
		{"q=" + url.QueryEscape("Chef's"), func(ps []product) error { return names(ps, "Chef's Knife, 20 cm") }},
		{"category=" + url.QueryEscape("books' OR 'x'='x"), func(ps []product) error { return count(ps, 0) }},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			if err := tc.want(list(t, c.URL, tc.query).Products); err != nil {
				t.Fatal(err)
			}
		})
	}
	if after := len(list(t, c.URL, "limit=100").Products); after != total {
		t.Fatalf("products after searches: got %d; want %d", after, total)
	}
}

func names(ps []product, want ...string) error {
	var got []string
	for _, p := range ps {
		got = append(got, p.Name)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		return fmt.Errorf("got %q; want %q", got, want)
	}
	return nil
}

func count(ps []product, n int) error {
	if len(ps) != n {
		return fmt.Errorf("got %d products; want %d", len(ps), n)
	}
	return nil
}

func allIn(ps []product, category string, n int) error {
	for _, p := range ps {
		if p.Category != category {
			return fmt.Errorf("got %s in %s; want only %s", p.Name, p.Category, category)
		}
	}
	return count(ps, n)
}

func TestBadQueries(t *testing.T) {
	c := startCatalog(t)
	tests := []struct {
		name, path, method, field string
		status                    int
		code                      string
	}{
		{"limit zero", "/v1/products?limit=0", "GET", "limit", 400, "invalid_request"},
		{"limit too big", "/v1/products?limit=101", "GET", "limit", 400, "invalid_request"},
		{"limit not a number", "/v1/products?limit=ten", "GET", "limit", 400, "invalid_request"},
		{"negative limit", "/v1/products?limit=-5", "GET", "limit", 400, "invalid_request"},
		{"malformed query string", "/v1/products?cursor=%%%", "GET", "query", 400, "invalid_request"},
		{"cursor not ours", "/v1/products?cursor=bm9wZQ", "GET", "cursor", 400, "invalid_request"},
		{"query too long", "/v1/products?q=" + strings.Repeat("a", 101), "GET", "q", 400, "invalid_request"},
		{"control character in query", "/v1/products?q=a%00b", "GET", "q", 400, "invalid_request"},
		{"unknown product", "/v1/products/prd_nope", "GET", "product", 404, "not_found"},
		{"id with quote", "/v1/products/" + url.PathEscape("x' OR '1'='1"), "GET", "product", 404, "not_found"},
		{"unknown route", "/v1/nothing", "GET", "", 404, "not_found"},
		{"wrong method", "/v1/products", "DELETE", "", 405, "method_not_allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, testkit.Call(t, tc.method, c.URL+tc.path, ""), tc.status, tc.code)
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}
}

const grinder = "prd_01hx4kq2m3coffeegrinder"
const kettle = "prd_01hx4kq2m3kettle000004"

func reserve(t *testing.T, base, orderID string, items ...reservationItem) testkit.Resp {
	t.Helper()
	return testkit.CallAs(t, "orders", "POST", base+"/internal/v1/reservations", testkit.JSON(t, reserveRequest{OrderID: orderID, Items: items}))
}

func TestReservations(t *testing.T) {
	c := startCatalog(t)
	g0, k0 := c.stock(t, grinder), c.stock(t, kettle)

	r := reserve(t, c.URL, "ord_1", reservationItem{kettle, 2}, reservationItem{grinder, 3})
	var res reservation
	r.Decode(t, &res)
	if r.Status != 201 || res.Status != "reserved" || len(res.Items) != 2 {
		t.Fatalf("reserve: got %d %s; want 201 reserved with 2 items", r.Status, r.Body)
	}
	if g, k := c.stock(t, grinder), c.stock(t, kettle); g != g0-3 || k != k0-2 {
		t.Fatalf("stock after reserve: got %d, %d; want %d, %d", g, k, g0-3, k0-2)
	}
	// The same reservation again changes nothing.
	again := reserve(t, c.URL, "ord_1", reservationItem{grinder, 3}, reservationItem{kettle, 2})
	if again.Status != 200 || c.stock(t, grinder) != g0-3 {
		t.Fatalf("repeat: got %d and stock %d; want 200 and stock %d", again.Status, c.stock(t, grinder), g0-3)
	}
	testkit.WantError(t, reserve(t, c.URL, "ord_1", reservationItem{grinder, 4}), 409, "reservation_mismatch")

	// Not enough stock: nothing is taken, not even of the items that were available.
	testkit.WantError(t, reserve(t, c.URL, "ord_2", reservationItem{kettle, 1}, reservationItem{grinder, g0 + 1}), 409, "insufficient_stock")
	if k := c.stock(t, kettle); k != k0-2 {
		t.Fatalf("kettle stock after a refused reservation: got %d; want %d", k, k0-2)
	}
	// ... and the refused order left no reservation behind: it may reserve what there is.
	if r := reserve(t, c.URL, "ord_2", reservationItem{kettle, 1}); r.Status != 201 {
		t.Fatalf("reserve after a refusal: got %d %s; want 201", r.Status, r.Body)
	}
	if r := testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_2/release", ""); r.Status != 200 || c.stock(t, kettle) != k0-2 {
		t.Fatalf("release ord_2: got %d %s, kettle stock %d; want 200 and %d", r.Status, r.Body, c.stock(t, kettle), k0-2)
	}
	testkit.WantError(t, reserve(t, c.URL, "ord_3", reservationItem{"prd_missing", 1}), 404, "product_not_found")

	// Commit keeps the stock taken; release after commit is refused.
	for i := 0; i < 2; i++ {
		if r := testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_1/commit", ""); r.Status != 200 {
			t.Fatalf("commit #%d: got %d %s; want 200", i+1, r.Status, r.Body)
		}
	}
	testkit.WantError(t, testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_1/release", ""), 409, "reservation_committed")
	if g := c.stock(t, grinder); g != g0-3 {
		t.Fatalf("grinder stock after commit: got %d; want %d", g, g0-3)
	}

	// Release gives the stock back, once.
	reserve(t, c.URL, "ord_4", reservationItem{grinder, 5})
	for i := 0; i < 2; i++ {
		if r := testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_4/release", ""); r.Status != 200 {
			t.Fatalf("release #%d: got %d; want 200", i+1, r.Status)
		}
	}
	if g := c.stock(t, grinder); g != g0-3 {
		t.Fatalf("grinder stock after release: got %d; want %d", g, g0-3)
	}
	testkit.WantError(t, testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_4/commit", ""), 409, "reservation_released")

	// Releasing an order never reserved blocks a late reservation for it.
	if r := testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_5/release", ""); r.Status != 200 {
		t.Fatalf("release unknown: got %d; want 200", r.Status)
	}
	testkit.WantError(t, reserve(t, c.URL, "ord_5", reservationItem{grinder, 1}), 409, "reservation_released")
	testkit.WantError(t, testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations/ord_6/commit", ""), 404, "not_found")
	if g := c.stock(t, grinder); g != g0-3 {
		t.Fatalf("grinder stock at the end: got %d; want %d", g, g0-3)
	}
}

func TestBadReservations(t *testing.T) {
	c := startCatalog(t)
	g0 := c.stock(t, grinder)
	tests := []struct{ name, body, field string }{
		{"no order id", `{"items":[{"product_id":"` + grinder + `","quantity":1}]}`, "order_id"},
		{"no items", `{"order_id":"o","items":[]}`, "items"},
		{"zero quantity", `{"order_id":"o","items":[{"product_id":"` + grinder + `","quantity":0}]}`, "items[0].quantity"},
		{"huge quantity", `{"order_id":"o","items":[{"product_id":"` + grinder + `","quantity":1000}]}`, "items[0].quantity"},
		{"fractional quantity", `{"order_id":"o","items":[{"product_id":"` + grinder + `","quantity":1.5}]}`, "quantity"},
		{"duplicate product", `{"order_id":"o","items":[{"product_id":"` + grinder + `","quantity":1},{"product_id":"` + grinder + `","quantity":1}]}`, "twice"},
		{"unknown field", `{"order_id":"o","items":[],"price":1}`, `"price"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/reservations", tc.body), 400, "invalid_request")
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}
	if g := c.stock(t, grinder); g != g0 {
		t.Fatalf("stock after bad requests: got %d; want %d", g, g0)
	}
}

// TestConcurrentReservations: 50 orders race for the last 10 units; exactly 10 win, stock ends at 0, and
// repeating a winner's reservation changes nothing.
func TestConcurrentReservations(t *testing.T) {
	c := startCatalog(t)
	if _, err := c.db.Exec(`UPDATE products SET stock = 10 WHERE id = $1`, kettle); err != nil {
		t.Fatal(err)
	}
	statuses := make([]int, 50)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := testkit.JSON(t, reserveRequest{OrderID: fmt.Sprintf("race_%d", i), Items: []reservationItem{{kettle, 1}}})
			resp, err := testkit.HTTPClientAs(t, "orders", c.URL).Post(c.URL+"/internal/v1/reservations", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	won, lost := 0, 0
	winner := -1
	for i, s := range statuses {
		switch s {
		case 201:
			won++
			winner = i
		case 409:
			lost++
		default:
			t.Fatalf("reservation %d: got status %d; want 201 or 409", i, s)
		}
	}
	if won != 10 || lost != 40 {
		t.Fatalf("got %d reserved and %d refused; want 10 and 40", won, lost)
	}
	if s := c.stock(t, kettle); s != 0 {
		t.Fatalf("stock: got %d; want 0", s)
	}
	again := reserve(t, c.URL, fmt.Sprintf("race_%d", winner), reservationItem{kettle, 1})
	if again.Status != 200 || c.stock(t, kettle) != 0 {
		t.Fatalf("repeat of a won reservation: got %d, stock %d; want 200, stock 0", again.Status, c.stock(t, kettle))
	}
	var n int
	if err := c.db.QueryRow(`SELECT count(*) FROM reservation_items WHERE product_id = $1`, kettle).Scan(&n); err != nil || n != 10 {
		t.Fatalf("reservation rows: got %d, %v; want 10", n, err)
	}
}

func TestLookupAndReservationStatus(t *testing.T) {
	c := startCatalog(t)
	r := testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/products/lookup", `{"ids":["`+kettle+`","prd_unknown","`+grinder+`"]}`)
	var got struct {
		Products []product `json:"products"`
	}
	r.Decode(t, &got)
	if r.Status != 200 || len(got.Products) != 2 || got.Products[0].ID != grinder || got.Products[1].ID != kettle || got.Products[0].PriceCents != 8900 {
		t.Fatalf("lookup: got %d %s; want the grinder and the kettle with their prices, the unknown id left out", r.Status, r.Body)
	}
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("%q", grinder)
	}
	for _, tc := range []struct{ name, body, field string }{
		{"no ids", `{"ids":[]}`, "ids"},
		{"too many ids", `{"ids":[` + strings.Join(many, ",") + `]}`, "ids"},
		{"empty id", `{"ids":[""]}`, "ids[0]"},
		{"unknown field", `{"ids":["x"],"prices":true}`, `"prices"`},
		{"malformed", `{"ids":`, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := testkit.WantError(t, testkit.CallAs(t, "orders", "POST", c.URL+"/internal/v1/products/lookup", tc.body), 400, "invalid_request")
			if !strings.Contains(msg, tc.field) {
				t.Fatalf("message %q: want it to name %q", msg, tc.field)
			}
		})
	}

	reserve(t, c.URL, "ord_status", reservationItem{kettle, 2})
	r = testkit.CallAs(t, "orders", "GET", c.URL+"/internal/v1/reservations/ord_status", "")
	var res reservation
	r.Decode(t, &res)
	if r.Status != 200 || res.Status != "reserved" || len(res.Items) != 1 || res.Items[0] != (reservationItem{kettle, 2}) {
		t.Fatalf("reservation status: got %d %s; want reserved with 2 kettles", r.Status, r.Body)
	}
	testkit.WantError(t, testkit.CallAs(t, "orders", "GET", c.URL+"/internal/v1/reservations/ord_none", ""), 404, "not_found")
}

// TestInternalRoutesNameTheirCallers: catalog's internal routes answer orders alone; the front, which the mesh
// lets call catalog's public routes, is refused every one of them (issue 28 §5: before, any allowed caller
// could commit, release or return any order's reservation).
func TestInternalRoutesNameTheirCallers(t *testing.T) {
	c := startCatalog(t)
	testkit.WantInternalCallers(t, "catalog", c.URL, "POST /internal/v1/products/lookup",
		"POST /internal/v1/reservations", "GET /internal/v1/reservations/ord_1", "POST /internal/v1/reservations/ord_1/commit",
		"POST /internal/v1/reservations/ord_1/release", "POST /internal/v1/reservations/ord_1/return")
}
