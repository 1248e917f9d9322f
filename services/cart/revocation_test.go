package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"shoplab/lab/testkit"
)

var sessionChecks = regexp.MustCompile(`shoplab_http_requests_total\{code="\d+",route="GET /internal/v1/sessions/\{id\}"\} (\d+)`)

// sessionCheckCount is how many per-request session checks auth has answered.
func sessionCheckCount(t *testing.T, f fixture) int {
	t.Helper()
	n := 0
	for _, m := range sessionChecks.FindAllStringSubmatch(testkit.Call(t, "GET", f.stack.Services["auth"][0].OpsURL+"/metrics", "").String(), -1) {
		c, _ := strconv.Atoi(m[1])
		n += c
	}
	return n
}

// TestRevocationsAreFollowed: with auth's revocation feed followed, cart checks tokens without asking auth per
// request, and refuses a token as soon as its logout has answered.
func TestRevocationsAreFollowed(t *testing.T) {
	f := start(t)
	u := testkit.NewUser(t, f.stack.URL("auth"))
	getCart(t, f, u)
	time.Sleep(300 * time.Millisecond) // the feed's first answer
	before := sessionCheckCount(t, f)
	for range 50 {
		getCart(t, f, u)
	}
	if after := sessionCheckCount(t, f); after != before {
		t.Fatalf("per-request session checks during 50 requests: got %d; want 0 (the feed is current)", after-before)
	}
	if r := testkit.Call(t, "DELETE", f.stack.URL("auth")+"/v1/sessions/current", "", u.Bearer()...); r.Status != 204 {
		t.Fatalf("logout: got %d", r.Status)
	}
	// Auth's logout answers once its followers have the revocation: cart refuses the token straight away.
	testkit.WantError(t, testkit.Call(t, "GET", f.cart.URL+"/v1/cart", "", u.Bearer()...), 401, "token_revoked")
	if after := sessionCheckCount(t, f); after != before {
		t.Fatalf("per-request session checks, logout included: got %d; want 0 (the feed told cart)", after-before)
	}
}
