package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

func runSmoke(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("smoke", flag.ContinueOnError)
	front := fs.String("front", firstNonEmpty(getenv("SHOPLAB_FRONT"), defaultFront()), "the front's URL")
	timeout := fs.Duration("timeout", 15*time.Second, "time allowed for each request")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	s := newShopper(*front, &http.Client{Timeout: *timeout})
	return smoke(ctx, s, stdout)
}

// smoke walks the journey of API.md through the front and stops at the first step that fails.
func smoke(ctx context.Context, s *shopper, out io.Writer) error {
	var (
		products []product
		email    string
		placed   order
		firstAns answer
	)
	steps := []struct {
		name string
		run  func() error
	}{
		{"front answers its status page", func() error { _, err := s.expect(ctx, 200, "GET", "/status.json", nil); return err }},
		{"catalog lists ≥ 12 products in ≥ 3 categories", func() error {
			a, err := s.expect(ctx, 200, "GET", "/api/catalog/v1/products?limit=100", nil)
			if err != nil {
				return err
			}
			var page struct {
				Products []product `json:"products"`
			}
			if err := a.decode(&page); err != nil {
				return err
			}
			products = page.Products
			cats := map[string]bool{}
			for _, p := range products {
				cats[p.Category] = true
			}
			if len(products) < 12 || len(cats) < 3 {
				return fmt.Errorf("got %d products in %d categories; want ≥ 12 in ≥ 3", len(products), len(cats))
			}
			return nil
		}},
		{"search finds a product", func() error {
			a, err := s.expect(ctx, 200, "GET", "/api/catalog/v1/products?q=grinder", nil)
			if err == nil && !bytes.Contains(a.body, []byte("Grinder")) {
				err = fmt.Errorf("search for grinder: got %.200s", a.body)
			}
			return err
		}},
		{"register and log in", func() (err error) { email, err = s.register(ctx); return err }},
		{"the same email again is 409", func() error {
			_, err := s.expect(ctx, 409, "POST", "/api/auth/v1/users", map[string]string{"email": email, "password": "another long one", "name": "X"})
			return err
		}},
		{"who am I", func() error { _, err := s.expect(ctx, 200, "GET", "/api/auth/v1/users/me", nil); return err }},
		{"fill the cart with two products", func() error {
			var picked []product
			for _, p := range products {
				if p.Stock >= 2 && len(picked) < 2 {
					picked = append(picked, p)
				}
			}
			if len(picked) < 2 {
				return errors.New("fewer than two products in stock")
			}
			want := int64(0)
			for _, p := range picked {
				if _, err := s.expect(ctx, 200, "PUT", "/api/cart/v1/cart/items/"+p.ID, map[string]int{"quantity": 1}); err != nil {
					return err
				}
				want += p.PriceCents
			}
			a, err := s.expect(ctx, 200, "GET", "/api/cart/v1/cart", nil)
			if err != nil {
				return err
			}
			var c struct {
				TotalCents int64 `json:"total_cents"`
			}
			if err := a.decode(&c); err != nil {
				return err
			}
			if c.TotalCents != want {
				return fmt.Errorf("cart total: got %d; want %d", c.TotalCents, want)
			}
			return nil
		}},
		{"check out with 4242424242424242", func() error {
			a, err := s.expect(ctx, 201, "POST", "/api/orders/v1/orders", checkoutBody("4242424242424242"), "Idempotency-Key", "smoke-"+email)
			if err != nil {
				return err
			}
			firstAns = a
			if err := a.decode(&placed); err != nil {
				return err
			}
			if placed.Status != "confirmed" {
				return fmt.Errorf("order status: got %s; want confirmed", placed.Status)
			}
			return nil
		}},
		{"the same checkout again returns the same order", func() error {
			a, err := s.call(ctx, "POST", "/api/orders/v1/orders", checkoutBody("4242424242424242"), "Idempotency-Key", "smoke-"+email)
			if err != nil {
				return err
			}
			if (a.status != 200 && a.status != 201) || !bytes.Equal(a.body, firstAns.body) {
				return fmt.Errorf("repeat: got %d %.200s; want the first answer again", a.status, a.body)
			}
			return nil
		}},
		{"the order is in the history", func() error {
			a, err := s.expect(ctx, 200, "GET", "/api/orders/v1/orders", nil)
			if err == nil && !bytes.Contains(a.body, []byte(placed.ID)) {
				err = fmt.Errorf("history: got %.300s; want order %s", a.body, placed.ID)
			}
			if err == nil {
				_, err = s.expect(ctx, 200, "GET", "/api/orders/v1/orders/"+placed.ID, nil)
			}
			return err
		}},
		{"a declined card is 422 and the cart is kept", func() error {
			if _, err := s.expect(ctx, 200, "PUT", "/api/cart/v1/cart/items/"+products[0].ID, map[string]int{"quantity": 1}); err != nil {
				return err
			}
			a, err := s.expect(ctx, 422, "POST", "/api/orders/v1/orders", checkoutBody("4000000000000002"), "Idempotency-Key", "smoke-declined-"+email)
			if err != nil {
				return err
			}
			if a.errorCode() != "payment_declined" {
				return fmt.Errorf("declined: got code %q; want payment_declined", a.errorCode())
			}
			c, err := s.expect(ctx, 200, "GET", "/api/cart/v1/cart", nil)
			if err == nil && !bytes.Contains(c.body, []byte(products[0].ID)) {
				err = errors.New("the cart lost its item after a decline")
			}
			return err
		}},
		{"payments is not reachable from outside (404)", func() error {
			_, err := s.expect(ctx, 404, "GET", "/api/payments/v1/payments?order_id="+placed.ID, nil)
			return err
		}},
		{"log out; the token is refused", func() error {
			if _, err := s.expect(ctx, 204, "DELETE", "/api/auth/v1/sessions/current", nil); err != nil {
				return err
			}
			_, err := s.expect(ctx, 401, "GET", "/api/cart/v1/cart", nil)
			return err
		}},
	}
	start := time.Now()
	for i, st := range steps {
		t := time.Now()
		if err := st.run(); err != nil {
			fmt.Fprintf(out, "✗ %2d. %s\n", i+1, st.name)
			return fmt.Errorf("smoke failed at %q: %w", st.name, err)
		}
		fmt.Fprintf(out, "✓ %2d. %-50s %6.0f ms\n", i+1, st.name, float64(time.Since(t).Microseconds())/1000)
	}
	fmt.Fprintf(out, "smoke passed: %d steps in %.1fs against %s\n", len(steps), time.Since(start).Seconds(), s.front)
	return nil
}
