package main

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

// TestDatabaseGap: catalog's database goes away (its connections cut, new ones refused, as while a Patroni
// failover has no primary) for less than DB_RETRY_WAIT: requests during the gap wait and answer 200, and the
// instance stays ready (a warning). For longer than the wait: 503 database_unavailable with Retry-After, never
// a 500; and 200 again as soon as the database is back, without a restart.
func TestDatabaseGap(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	pg := testkit.Postgres(t)
	proxy := testkit.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	viaProxy := strings.Replace(dsn, fmt.Sprintf("port=%d", pg.Port), fmt.Sprintf("port=%d", proxy.Port()), 1)
	if viaProxy == dsn {
		t.Fatalf("DSN %q does not name port %d", dsn, pg.Port)
	}
	svc := testkit.Run(t, "catalog", run, map[string]string{"DATABASE_URL": viaProxy, "DB_RETRY_WAIT": "4s",
		"DB_FAILOVER_GRACE": "30s", "CONSUL_HTTP_ADDR": testkit.SharedConsul(t).HTTPAddr, "SERVICE_ID": "catalog-gap"})
	first := list(t, svc.URL, "")
	id := first.Products[0].ID

	// 1. A 1.5 s gap under 6 concurrent readers.
	proxy.Cut()
	gapEnds := time.AfterFunc(1500*time.Millisecond, proxy.Restore)
	defer gapEnds.Stop()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for i := range 6 {
		wg.Go(func() {
			path := "/v1/products?limit=5"
			if i%2 == 1 {
				path = "/v1/products/" + id
			}
			if r := testkit.Call(t, "GET", svc.URL+path, ""); r.Status != 200 {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("GET %s: %d %s", path, r.Status, r.Body))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failed {
		t.Errorf("during a 1.5s gap: got %s; want 200", f)
	}

	// 2. Gone for longer than the wait: 503 with Retry-After, and readiness only warns within the grace.
	proxy.Cut()
	began := time.Now()
	r := testkit.Call(t, "GET", svc.URL+"/v1/products/"+id, "")
	waited := time.Since(began)
	testkit.WantError(t, r, 503, "database_unavailable")
	if r.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After: got %q; want 1", r.Header.Get("Retry-After"))
	}
	if waited < 3*time.Second || waited > 10*time.Second {
		t.Errorf("503 after %v; want it after about the 4s wait", waited)
	}
	ready := testkit.Call(t, "GET", svc.OpsURL+"/health/ready", "")
	if ready.Status != 200 || !strings.Contains(ready.String(), `"database":{"status":"warn"`) {
		t.Errorf("readiness without a database, within the grace: got %d %s; want 200 with the database a warning", ready.Status, ready.Body)
	}

	// 3. Back: 200 at once.
	proxy.Restore()
	if r := testkit.Call(t, "GET", svc.URL+"/v1/products/"+id, ""); r.Status != 200 {
		t.Fatalf("after the database came back: got %d %s; want 200", r.Status, r.Body)
	}
}
