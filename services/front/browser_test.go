package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shoplab/internal/topology"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

const (
	grinderID = "prd_01hx4kq2m3coffeegrinder" // $89.00
	kettleID  = "prd_01hx4kq2m3kettle000004"  // $45.00
)

// chromiumPath finds Debian's chromium: $SHOPLAB_CHROMIUM or chromium on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("SHOPLAB_CHROMIUM"); p != "" {
		return p, nil
	}
	return exec.LookPath("chromium")
}

// newBrowserContext starts headless Chromium with the flags this network needs (no background traffic to
// outside hosts) and a private profile. The browser lives until the test ends; steps set their own timeouts.
func newBrowserContext(t *testing.T) context.Context {
	t.Helper()
	path, err := chromiumPath()
	testkit.Need(t, "chromium", err, "install it with: sudo apt-get install -y --no-install-recommends chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx (no timeout here)
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// artifacts is the git-ignored folder for screenshots.
func artifacts(t *testing.T, name string) string {
	t.Helper()
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "test-artifacts", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

type action = chromedp.Action[chromedp.Void]

// step runs actions within 30 s, then saves a full-page screenshot named after the step (also when it fails).
func step(t *testing.T, ctx context.Context, dir, name string, actions ...action) {
	t.Helper()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(sctx, actions...)
	cancel()
	shot, cancelShot := context.WithTimeout(ctx, 10*time.Second)
	defer cancelShot()
	if png, serr := chromedp.Run(shot, chromedp.FullScreenshot(100)); serr == nil {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
	}
	if err != nil {
		text, _ := chromedp.Run(shot, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("browser step %s: %v\npage text: %s", name, err, text)
	}
	t.Logf("step %s: %s", name, time.Since(start).Round(time.Millisecond))
}

// read returns the text of sel.
func read(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(rctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return v
}

func poll(expr string) action {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second))
}

// pageReady waits until the storefront has rendered the page for hash.
func pageReady(hash string) action {
	return poll(fmt.Sprintf(`document.body.dataset.ready === %q`, hash))
}

func waitText(sel, want string) action {
	return poll(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent === %q`, sel, want))
}

func visible(sel string) action { return chromedp.WaitVisible(chromedp.CSS(sel)) }

// fill replaces the value of the input sel (the forms read .value on submit).
func fill(sel, value string) action {
	return chromedp.Steps(visible(sel), chromedp.SetValue(chromedp.CSS(sel), value))
}

func click(sel string) action { return chromedp.Click(chromedp.CSS(sel)) }

func nav(base, hash string) action {
	return chromedp.Steps(chromedp.Navigate(base+"/"+hash), pageReady(hash))
}

// TestBrowserJourney drives the storefront in real headless Chromium against real services: register, log
// out and in, add two products, check out with the authorised test card, find the order in the history, and
// see the declined card's message.
func TestBrowserJourney(t *testing.T) {
	ctx := newBrowserContext(t)
	st := testkit.StartStack(t, topology.Default().Needs(topology.Entry)...)
	front := startFront(t, st, nil)
	dir := artifacts(t, "browser")
	email := fmt.Sprintf("grace%d@example.com", time.Now().UnixNano())
	addButton := func(id string) string { return fmt.Sprintf(`[data-product-id=%q] [data-testid=add-to-cart]`, id) }

	step(t, ctx, dir, "01-register",
		nav(front.URL, "#/register"),
		fill(`[data-testid=register-name]`, "Grace Hopper"),
		fill(`[data-testid=register-email]`, email),
		fill(`[data-testid=register-password]`, "debugging since 1947"),
		click(`[data-testid=register-submit]`),
		waitText(`[data-testid=user-name]`, "Grace Hopper"),
	)
	step(t, ctx, dir, "02-login",
		click(`[data-testid=logout]`),
		waitText(`#flash`, "You are logged out."),
		nav(front.URL, "#/login"),
		fill(`[data-testid=login-email]`, email),
		fill(`[data-testid=login-password]`, "debugging since 1947"),
		click(`[data-testid=login-submit]`),
		waitText(`[data-testid=user-name]`, "Grace Hopper"),
	)
	step(t, ctx, dir, "03-add-two-products",
		nav(front.URL, "#/"),
		visible(addButton(grinderID)),
		click(addButton(grinderID)),
		waitText(`#cart-count`, "1"),
		click(addButton(kettleID)),
		waitText(`#cart-count`, "2"),
	)
	step(t, ctx, dir, "04-cart", nav(front.URL, "#/cart"), visible(`[data-testid=cart-total]`))
	if total := read(t, ctx, `[data-testid=cart-total]`); total != "Total $134.00" {
		t.Fatalf("cart total: got %q; want Total $134.00", total)
	}
	step(t, ctx, dir, "05-checkout-confirmed",
		click(`[data-testid=go-checkout]`),
		pageReady("#/checkout"),
		fill(`[data-testid=checkout-line1]`, "1 Navy Yard"),
		fill(`[data-testid=checkout-city]`, "Arlington"),
		fill(`[data-testid=checkout-postal_code]`, "22202"),
		fill(`[data-testid=checkout-number]`, "4242 4242 4242 4242"),
		click(`[data-testid=checkout-submit]`),
		visible(`[data-testid=order-confirmation]`),
		waitText(`[data-testid=order-status]`, "confirmed"),
		waitText(`#cart-count`, "0"),
	)
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`[data-testid=order]`), "data-order-id"))
	if err != nil {
		t.Fatal(err)
	}
	orderID := attr.Value
	step(t, ctx, dir, "06-order-history", nav(front.URL, "#/orders"), visible(`[data-testid=order-list]`))
	history := read(t, ctx, `[data-testid=order-list]`)
	if orderID == "" || !strings.Contains(history, orderID) || !strings.Contains(history, "confirmed") || !strings.Contains(history, "$134.00") {
		t.Fatalf("history: got %q; want order %s, confirmed, $134.00", history, orderID)
	}
	step(t, ctx, dir, "07-declined-card",
		nav(front.URL, "#/"),
		visible(addButton(grinderID)),
		click(addButton(grinderID)),
		waitText(`#cart-count`, "1"),
		nav(front.URL, "#/checkout"),
		fill(`[data-testid=checkout-line1]`, "1 Navy Yard"),
		fill(`[data-testid=checkout-city]`, "Arlington"),
		fill(`[data-testid=checkout-postal_code]`, "22202"),
		fill(`[data-testid=checkout-number]`, "4000 0000 0000 0002"),
		click(`[data-testid=checkout-submit]`),
		visible(`[data-testid=checkout-error]`),
	)
	if declined := read(t, ctx, `[data-testid=checkout-error]`); !strings.Contains(declined, "Payment declined") || !strings.Contains(declined, "card was declined") {
		t.Fatalf("declined message: got %q; want the declined card explained", declined)
	}
	t.Logf("screenshots in %s", dir)
}

// TestBrowserAdminJourney: an admin creates and restocks a product in the Admin area; a customer buys it and
// cancels the order from their history; the admin sees the order cancelled and the stock back.
func TestBrowserAdminJourney(t *testing.T) {
	ctx := newBrowserContext(t)
	st := testkit.StartStack(t, topology.Default().Needs(topology.Entry)...)
	front := startFront(t, st, nil)
	admin := st.NewAdmin(t)
	dir := artifacts(t, "browser-admin")
	login := func(email, password, name string) action {
		return chromedp.Steps(nav(front.URL, "#/login"),
			fill(`[data-testid=login-email]`, email), fill(`[data-testid=login-password]`, password),
			click(`[data-testid=login-submit]`), poll(`!!document.querySelector("[data-testid=user-name]")`),
			pageReady("#/")) // a login from the login page ends on the product list
	}
	sku := fmt.Sprintf("TEA-%d", time.Now().UnixNano()%100000)

	step(t, ctx, dir, "01-admin-login",
		login(admin.Email, "a long password", ""),
		visible(`[data-testid=nav-admin]`),
		nav(front.URL, "#/admin"),
		visible(`[data-testid=admin-create]`),
	)
	step(t, ctx, dir, "02-create-product",
		fill(`[data-testid=admin-sku]`, sku),
		fill(`[data-testid=admin-name]`, "Bamboo Matcha Whisk"),
		fill(`[data-testid=admin-description]`, "Eighty prongs for a smooth, frothy bowl."),
		fill(`[data-testid=admin-category]`, "tea"),
		fill(`[data-testid=admin-price]`, "18.50"),
		fill(`[data-testid=admin-stock]`, "5"),
		click(`[data-testid=admin-create-submit]`),
		waitText(`#flash`, "Product Bamboo Matcha Whisk created."),
		poll(`[...document.querySelectorAll("[data-testid=admin-product]")].some(r => r.textContent.includes("Bamboo Matcha Whisk"))`),
	)
	productID := evalString(t, ctx, `[...document.querySelectorAll("[data-testid=admin-product]")].find(r => r.textContent.includes("Bamboo Matcha Whisk")).dataset.productId`)
	row := fmt.Sprintf(`[data-testid=admin-product][data-product-id=%q]`, productID)
	step(t, ctx, dir, "03-restock",
		fill(row+` [data-testid=admin-restock-delta]`, "3"),
		fill(row+` [data-testid=admin-restock-reason]`, "delivery"),
		click(row+` [data-testid=admin-restock-submit]`),
		waitText(`#flash`, "Bamboo Matcha Whisk: 8 in stock."),
		waitText(row+` [data-testid=admin-stock]`, "8"),
		click(`[data-testid=logout]`),
		visible(`[data-testid=nav-login]`),
	)

	email := fmt.Sprintf("tea%d@example.com", time.Now().UnixNano())
	step(t, ctx, dir, "04-customer-buys-it",
		nav(front.URL, "#/register"),
		fill(`[data-testid=register-name]`, "Sen Rikyu"),
		fill(`[data-testid=register-email]`, email),
		fill(`[data-testid=register-password]`, "the way of tea"),
		click(`[data-testid=register-submit]`),
		waitText(`[data-testid=user-name]`, "Sen Rikyu"),
		pageReady("#/"), // registration ends on the product list
		poll(`document.getElementById("nav-admin").hidden === true`),
		nav(front.URL, "#/?q=Matcha"),
		visible(fmt.Sprintf(`[data-product-id=%q] [data-testid=add-to-cart]`, productID)),
		click(fmt.Sprintf(`[data-product-id=%q] [data-testid=add-to-cart]`, productID)),
		waitText(`#cart-count`, "1"),
		nav(front.URL, "#/checkout"),
		fill(`[data-testid=checkout-line1]`, "1 Tea Lane"),
		fill(`[data-testid=checkout-city]`, "Kyoto"),
		fill(`[data-testid=checkout-postal_code]`, "600-8216"),
		fill(`[data-testid=checkout-number]`, "4242 4242 4242 4242"),
		click(`[data-testid=checkout-submit]`),
		visible(`[data-testid=order-confirmation]`),
		waitText(`[data-testid=order-total]`, "Total $18.50"),
	)
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`[data-testid=order]`), "data-order-id"))
	if err != nil {
		t.Fatal(err)
	}
	orderID := attr.Value
	step(t, ctx, dir, "05-customer-cancels",
		nav(front.URL, "#/orders"),
		visible(`[data-testid=order-cancel]`),
		click(`[data-testid=order-cancel]`),
		poll(`document.querySelector("[data-testid=order-status]") && document.querySelector("[data-testid=order-status]").textContent === "cancelled"`),
		poll(`!document.querySelector("[data-testid=order-cancel]")`),
		click(`[data-testid=logout]`),
		visible(`[data-testid=nav-login]`),
	)
	step(t, ctx, dir, "06-admin-sees-it",
		login(admin.Email, "a long password", ""),
		nav(front.URL, "#/admin"),
		visible(fmt.Sprintf(`[data-testid=admin-order][data-order-id=%q]`, orderID)),
		waitText(fmt.Sprintf(`[data-testid=admin-order][data-order-id=%q] [data-testid=admin-order-status]`, orderID), "cancelled"),
		waitText(row+` [data-testid=admin-stock]`, "8"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=admin-order-filter]`), "cancelled"),
		script(`document.querySelector("[data-testid=admin-order-filter]").dispatchEvent(new Event("change"))`),
		poll(`document.querySelectorAll("[data-testid=admin-order]").length === 1`),
	)
	t.Logf("screenshots in %s", dir)
}

func evalString(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ectx, chromedp.Evaluate[string](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// script runs expr in the page for its effect.
func script(expr string) action {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](expr+", true")(ctx, tg)
		return err
	})
}

// TestBrowserStatusPlots: during a short load through the front, the status page draws the routed service's
// requests/s, 5xx ratio and p99 plots from the gateway's own per-second counts.
func TestBrowserStatusPlots(t *testing.T) {
	ctx := newBrowserContext(t)
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	dir := artifacts(t, "status")
	l := startLoop(front.URL+"/api/catalog/v1/products?limit=3", 2, 3000)
	defer l.finish()
	for deadline := time.Now().Add(10 * time.Second); l.ok.Load() < 200 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	catalog := `[data-testid=plots][data-service=catalog]`
	step(t, ctx, dir, "01-status-plots",
		chromedp.Navigate(front.URL+"/status"),
		visible(catalog),
		poll(fmt.Sprintf(`(() => {
			const p = document.querySelector(%q);
			if (!p) return false;
			const points = (series) => +(p.querySelector('svg[data-series="' + series + '"]') || {dataset: {}}).dataset.points || 0;
			const label = p.querySelector('svg[data-series="requests/s"] text');
			return points("requests/s") > 100 && points("p99") >= 3 && points("5xx") >= 3 &&
				!!label && label.textContent.startsWith("requests/s: ");
		})()`, catalog)),
	)
	if l.failed.Load() != 0 {
		t.Fatalf("load: got %d failed (%v); want none", l.failed.Load(), l.failures)
	}
	t.Logf("screenshot in %s", dir)
}
