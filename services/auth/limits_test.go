package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"

	"shoplab/internal/mesh"
	"shoplab/internal/web"
	"shoplab/lab/testkit"
)

func chmod(path string, mode os.FileMode) error { return os.Chmod(path, mode) }

func loginAs(t *testing.T, base, email, password, addr string) testkit.Resp {
	t.Helper()
	h := []string{}
	if addr != "" {
		h = append(h, "X-Forwarded-For", addr)
	}
	return testkit.Call(t, "POST", base+"/v1/sessions", testkit.JSON(t, map[string]string{"email": email, "password": password}), h...)
}

func wantLimited(t *testing.T, r testkit.Resp) {
	t.Helper()
	testkit.WantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After: got %q; want a whole number of seconds ≥ 1", r.Header.Get("Retry-After"))
	}
}

// TestLoginLimitPerAccount: past the account's limit of failed logins every attempt is 429 with Retry-After —
// the right password too, from any address — while other accounts are untouched.
func TestLoginLimitPerAccount(t *testing.T) {
	a := startAuth(t, map[string]string{"AUTH_LIMIT_ACCOUNT": "3/1m", "AUTH_LIMIT_ADDRESS": "1000/1m"})
	register(t, a.URL, "target@example.com", "the real password", "Target")
	register(t, a.URL, "bystander@example.com", "another password", "Bystander")
	for i := range 3 {
		r := loginAs(t, a.URL, "target@example.com", "guess number "+strconv.Itoa(i), fmt.Sprintf("203.0.113.%d", i+1))
		testkit.WantError(t, r, 401, "invalid_credentials")
	}
	wantLimited(t, loginAs(t, a.URL, "target@example.com", "guess number 4", "203.0.113.9"))
	wantLimited(t, loginAs(t, a.URL, "target@example.com", "the real password", "198.51.100.7"))
	if r := loginAs(t, a.URL, "bystander@example.com", "another password", ""); r.Status != 201 {
		t.Fatalf("another account: got %d %s; want 201", r.Status, r.Body)
	}
	// The window ends: the right password works again.
	if _, err := a.db.Exec(`UPDATE rate_limits SET window_start = window_start - interval '2 minutes'`); err != nil {
		t.Fatal(err)
	}
	if r := loginAs(t, a.URL, "target@example.com", "the real password", ""); r.Status != 201 {
		t.Fatalf("after the window: got %d %s; want 201", r.Status, r.Body)
	}
}

// TestLoginLimitPerAddress: failed logins and registrations from one client address count together; past the
// limit that address gets 429 for any account, others do not. The address is the one the trusted front
// forwards; an untrusted peer's X-Forwarded-For is ignored.
func TestLoginLimitPerAddress(t *testing.T) {
	a := startAuth(t, map[string]string{"AUTH_LIMIT_ADDRESS": "4/1m", "AUTH_LIMIT_ACCOUNT": "1000/1m"})
	register(t, a.URL, "victim@example.com", "correct password", "Victim") // from 127.0.0.1: counts for that address
	const attacker = "192.0.2.66"
	for i := range 4 {
		r := loginAs(t, a.URL, fmt.Sprintf("user%d@example.com", i), "wrong password!", attacker)
		testkit.WantError(t, r, 401, "invalid_credentials")
	}
	wantLimited(t, loginAs(t, a.URL, "victim@example.com", "correct password", attacker))
	r := testkit.Call(t, "POST", a.URL+"/v1/users", `{"email":"new@example.com","password":"long enough pw","name":"N"}`, "X-Forwarded-For", attacker)
	wantLimited(t, r)
	if r := loginAs(t, a.URL, "victim@example.com", "correct password", "192.0.2.67"); r.Status != 201 {
		t.Fatalf("another address: got %d %s; want 201", r.Status, r.Body)
	}
	var users int
	if err := a.db.QueryRow(`SELECT count(*) FROM users`).Scan(&users); err != nil || users != 1 {
		t.Fatalf("users after limited registration: got %d, %v; want 1", users, err)
	}

	trusted, _ := parseTrusted("front")
	lim := &limiter{trusted: trusted}
	// From the front exactly one address in one header line; two lines, a list or a non-address is a 400.
	for _, tc := range []struct {
		caller, remote string
		xff            []string
		want           string // "" for the 400
	}{
		{"front", "127.0.0.1:5000", []string{"192.0.2.1"}, "192.0.2.1"},
		{"front", "127.0.0.1:5000", nil, "127.0.0.1"},
		{"front", "127.0.0.1:5000", []string{"10.9.9.9, 192.0.2.1"}, ""},
		{"front", "127.0.0.1:5000", []string{"192.0.2.1", "10.9.9.9"}, ""},
		{"front", "127.0.0.1:5000", []string{"192.0.2.1", "10.9.9.9", "10.9.9.10"}, ""},
		{"front", "127.0.0.1:5000", []string{"not-an-ip"}, ""},
		{"front", "127.0.0.1:5000", []string{""}, ""},
		{"cart", "198.51.100.4:5000", []string{"192.0.2.1", "10.9.9.9"}, "198.51.100.4"}, // not the front: ignored
		{"", "198.51.100.4:5000", []string{"192.0.2.1"}, "198.51.100.4"},
		{"front", "[::ffff:127.0.0.1]:5000", []string{" 192.0.2.2 "}, "192.0.2.2"},
	} {
		req := httptest.NewRequest("POST", "/v1/sessions", nil)
		req = req.WithContext(mesh.WithCaller(req.Context(), tc.caller))
		req.RemoteAddr = tc.remote
		for _, v := range tc.xff {
			req.Header.Add("X-Forwarded-For", v)
		}
		got, err := lim.clientAddr(req)
		var werr *web.Error
		switch {
		case tc.want == "" && (!errors.As(err, &werr) || werr.Status != http.StatusBadRequest):
			t.Errorf("clientAddr(caller %q, %s, XFF %q): got %q, %v; want a 400", tc.caller, tc.remote, tc.xff, got, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("clientAddr(caller %q, %s, XFF %q): got %q, %v; want %s", tc.caller, tc.remote, tc.xff, got, err, tc.want)
		}
	}
}

// TestHashingIsCapped: with one hashing slot and no wait, concurrent logins beyond it are refused at once with
// 503 overloaded rather than queued.
func TestHashingIsCapped(t *testing.T) {
	a := startAuth(t, map[string]string{"AUTH_HASH_CONCURRENCY": "1", "AUTH_HASH_WAIT": "1ms", "AUTH_BCRYPT_COST": "12",
		"AUTH_LIMIT_ADDRESS": "1000/1m", "AUTH_LIMIT_PAIR": "1000/1m", "AUTH_LIMIT_ACCOUNT": "1000/1m"})
	register(t, a.URL, "busy@example.com", "a long password", "Busy")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := loginAs(t, a.URL, "busy@example.com", "a long password", "")
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
			if r.Status == 503 {
				testkit.WantError(t, r, 503, "overloaded")
				if r.Header.Get("Retry-After") == "" {
					t.Errorf("503 without Retry-After")
				}
			}
		}()
	}
	wg.Wait()
	if statuses[201] < 1 || statuses[503] < 1 || statuses[201]+statuses[503] != 8 {
		t.Fatalf("8 concurrent logins with one hashing slot: got %v; want some 201 and the rest 503", statuses)
	}
}

// TestNobodyLocksOutSomebodyElse: a stranger guessing an account's password from one address is stopped by
// that account-and-address limit, while its owner, from an address of their own, logs in all along (issue 28
// §2: with the old per-account limit, five failed guesses from anywhere locked the owner out). Defaults.
func TestNobodyLocksOutSomebodyElse(t *testing.T) {
	a := startAuth(t, nil)
	register(t, a.URL, "owner@example.com", "the owner's password", "Owner")
	const stranger, owner = "192.0.2.66", "198.51.100.7"
	statuses := map[int]int{}
	for i := range 20 {
		r := loginAs(t, a.URL, "owner@example.com", fmt.Sprintf("guess number %d", i), stranger)
		statuses[r.Status]++
		if r.Status == 429 {
			wantLimited(t, r)
		}
		if i%5 == 4 {
			if r := loginAs(t, a.URL, "owner@example.com", "the owner's password", owner); r.Status != 201 {
				t.Fatalf("the owner after %d guesses by a stranger: got %d %s; want 201", i+1, r.Status, r.Body)
			}
		}
	}
	if statuses[401] != 5 || statuses[429] != 15 {
		t.Fatalf("20 guesses from one address: got %v; want 5 × 401, then 15 × 429", statuses)
	}
	// The owner's own typos do not add up: the right password clears their count.
	for round := range 3 {
		for i := range 4 {
			testkit.WantError(t, loginAs(t, a.URL, "owner@example.com", fmt.Sprintf("typo %d %d", round, i), owner), 401, "invalid_credentials")
		}
		if r := loginAs(t, a.URL, "owner@example.com", "the owner's password", owner); r.Status != 201 {
			t.Fatalf("the owner after 4 typos, round %d: got %d %s; want 201", round+1, r.Status, r.Body)
		}
	}
}

// TestBurstIsCountedBeforeHashing: attempts sent at once are each counted before any password is hashed, so no
// more are tried than the limit allows (before, the limit was read before hashing and a failure counted after:
// a burst got every attempt in).
func TestBurstIsCountedBeforeHashing(t *testing.T) {
	a := startAuth(t, map[string]string{"AUTH_LIMIT_PAIR": "3/15m", "AUTH_HASH_WAIT": "30s"})
	register(t, a.URL, "burst@example.com", "the right password", "Burst")
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := loginAs(t, a.URL, "burst@example.com", fmt.Sprintf("wrong guess %d", i), "192.0.2.77")
			mu.Lock()
			statuses[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[401] != 3 || statuses[429] != 9 {
		t.Fatalf("12 guesses at once from one address with a limit of 3: got %v; want 3 × 401 and 9 × 429", statuses)
	}
}
