package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"testing"

	"shoplab/lab/testkit"
)

// TestWritesAreNotReplayed: when auth's database connection breaks after a write ran (the proxy drops the
// server's answer), the registration answers what happened — 503 database_unavailable, safe to retry — never a
// false 409 for the account it has just made, and nothing is counted or created twice (issue 27 §2). Before
// pgdb's guard, database/sql ran the statement again: the rate-limit hit counted twice, and the registration
// answered 409 email_taken for an account it had created.
func TestWritesAreNotReplayed(t *testing.T) {
	pg := testkit.Postgres(t)
	dsn := testkit.NewDatabase(t)
	proxy := testkit.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	a := startAuth(t, map[string]string{"DATABASE_URL": replacePort(dsn, pg.Port, proxy.Port())})
	direct, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := direct.QueryRow(q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	hits := func() int {
		return count(`SELECT coalesce(sum(hits), 0) FROM rate_limits WHERE key LIKE 'addr:%'`)
	}
	tests := []struct {
		name  string
		nth   int // which write of the registration is cut: 1 the address's rate-limit hit, 2 the account
		users int // accounts with the email afterwards
	}{
		{"the rate-limit hit is cut", 1, 0},
		{"the account's insert is cut", 2, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := fmt.Sprintf("cut%d@example.com", i)
			body := testkit.JSON(t, map[string]string{"email": email, "password": "a long password", "name": "Cut"})
			before := hits()
			proxy.CutAfterReply([]byte("INSERT 0 1"), tt.nth)
			r := testkit.Call(t, "POST", a.URL+"/v1/users", body)
			testkit.WantError(t, r, http.StatusServiceUnavailable, "database_unavailable")
			if r.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if got := hits() - before; got != 1 {
				t.Errorf("the address's hits: got %d more; want 1 (counted once)", got)
			}
			if got := count(`SELECT count(*) FROM users WHERE email = $1`, email); got != tt.users {
				t.Errorf("accounts with %s: got %d; want %d", email, got, tt.users)
			}
			// The client retries: an account created by the cut attempt is there (409 tells the truth), and it
			// logs in; otherwise the retry creates it.
			r = testkit.Call(t, "POST", a.URL+"/v1/users", body)
			switch tt.users {
			case 1:
				testkit.WantError(t, r, http.StatusConflict, "email_taken")
			default:
				if r.Status != http.StatusCreated {
					t.Fatalf("retry: got %d %s; want 201", r.Status, r.Body)
				}
			}
			login(t, a.URL, email, "a long password")
		})
	}
}
