package main

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/pgdb"
	"shoplab/lab/testkit"
)

// insertStuck stores n orders at step reserved, untouched for a minute, as a crashed checkout leaves them.
func insertStuck(t *testing.T, store *postgresStore, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("ord_stuck_%03d", i)
		if _, err := store.db.Exec(`
			INSERT INTO orders (id, user_id, status, step, total_cents, currency, ship_name, ship_line1, ship_city,
			                    ship_postal_code, ship_country, card_brand, card_last4, created_at, updated_at)
			VALUES ($1, 'usr_x', 'pending', 'reserved', 100, 'USD', 'n', 'l', 'c', 'p', 'GB', 'visa', '4242', now(), now() - interval '1 minute')`, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestClaimStuckIsExclusiveAndBacksOff: two replicas claiming at once never get the same order; a claimed
// order is not claimed again until its lease ends, and each claim doubles the wait, while the other orders
// keep being claimed.
func TestClaimStuckIsExclusiveAndBacksOff(t *testing.T) {
	db := openMigrated(t)
	store := &postgresStore{db: pgdb.Wrap(db)}
	insertStuck(t, store, 40)

	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				orders, err := store.ClaimStuck(context.Background(), time.Second, time.Hour, 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, o := range orders {
					got[o.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(got) != 40 {
		t.Fatalf("claimed by two replicas: got %d distinct orders; want all 40", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("order %s claimed %d times; want once (claims are exclusive)", id, n)
		}
	}
	if again, err := store.ClaimStuck(context.Background(), time.Second, time.Hour, 100); err != nil || len(again) != 0 {
		t.Fatalf("claim during the leases: got %d, %v; want none", len(again), err)
	}

	// Backoff: a failing order's wait doubles with each attempt and never blocks the fresh ones.
	fresh := &postgresStore{db: pgdb.Wrap(db)}
	if _, err := db.Exec(`UPDATE orders SET recover_after = now() - interval '1 second' WHERE id = 'ord_stuck_000'`); err != nil {
		t.Fatal(err)
	}
	var waits []float64
	for range 3 {
		orders, err := fresh.ClaimStuck(context.Background(), time.Second, 10*time.Second, 100)
		if err != nil || len(orders) != 1 || orders[0].ID != "ord_stuck_000" {
			t.Fatalf("reclaim after the lease: got %v, %v; want ord_stuck_000 alone", orders, err)
		}
		var secs float64
		if err := db.QueryRow(`SELECT extract(epoch FROM recover_after - now()) FROM orders WHERE id = 'ord_stuck_000'`).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, secs)
		if _, err := db.Exec(`UPDATE orders SET recover_after = now() - interval '1 second' WHERE id = 'ord_stuck_000'`); err != nil {
			t.Fatal(err)
		}
	}
	// attempts 1, 2, 3 before these claims: 10 s · 2, 4, 8.
	for i, want := range []float64{20, 40, 80} {
		if waits[i] < want-2 || waits[i] > want+2 {
			t.Fatalf("wait after claim %d: got %.1fs; want about %.0fs (doubling)", i+2, waits[i], want)
		}
	}
}

// TestLateRecoveryKeepsNewCartLines: the checkout crashes after the charge; before recovery confirms the
// order, the user sets the same product again in the cart; recovery confirms the order and the line the user
// set since stays in the cart.
func TestLateRecoveryKeepsNewCartLines(t *testing.T) {
	f := start(t, nil)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	f.add(t, u, grinder, 1)
	f.add(t, u, kettle, 1)

	crashAfterStep = crashAfterCharge
	t.Cleanup(func() { crashAfterStep = nil })
	req, _ := http.NewRequest("POST", f.orders.URL+"/v1/orders", strings.NewReader(checkoutBody(goodCard)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Idempotency-Key", "late")
	if resp, err := testkit.HTTPClient(t, req.URL.String()).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("checkout with a crash after the charge: got %d; want the connection dropped", resp.StatusCode)
	}
	crashAfterStep = nil
	o := onlyOrder(t, f, u)

	f.add(t, u, grinder, 3) // the user wants three more grinders: a new version of that line

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
	if final := waitStatus(t, f, u, o.ID, 10*time.Second); final.Status != "confirmed" {
		t.Fatalf("after recovery: got %s; want confirmed", final.Status)
	}
	var c struct {
		Items []struct {
			ProductID string `json:"product_id"`
			Quantity  int    `json:"quantity"`
		} `json:"items"`
	}
	testkit.Call(t, "GET", f.stack.URL("cart")+"/v1/cart", "", u.Bearer()...).Decode(t, &c)
	if len(c.Items) != 1 || c.Items[0].ProductID != grinder || c.Items[0].Quantity != 3 {
		t.Fatalf("cart after the late confirmation: got %+v; want only the grinder line set since (quantity 3)", c.Items)
	}
}

// openMigrated opens a fresh database with orders' schema.
func openMigrated(t *testing.T) *sql.DB {
	t.Helper()
	dsn := testkit.NewDatabase(t)
	db, err := pgdb.Open(context.Background(), dsn, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgdb.Migrate(context.Background(), db, migrations, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	return db
}
