package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"shoplab/internal/testkit"
)

type feedAnswer struct {
	Revocations []revocation `json:"revocations"`
	More        bool         `json:"more"`
	AsOf        time.Time    `json:"as_of"`
	Generation  string       `json:"generation"`
}

func (a feedAnswer) has(sessionID string) bool {
	for _, r := range a.Revocations {
		if r.SessionID == sessionID {
			return true
		}
	}
	return false
}

// askFeed asks auth's revocation feed one question; it may run on any goroutine.
func askFeed(c *http.Client, base string, q url.Values) (feedAnswer, error) {
	resp, err := c.Get(base + "/internal/v1/revocations?" + q.Encode())
	if err != nil {
		return feedAnswer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return feedAnswer{}, fmt.Errorf("revocation feed: got %d; want 200", resp.StatusCode)
	}
	var a feedAnswer
	return a, json.NewDecoder(resp.Body).Decode(&a)
}

func TestRevocationFeedRejectsBadQuestions(t *testing.T) {
	a := startAuth(t, nil)
	for _, q := range []string{"since=yesterday", "since=-1", "wait=1h", "wait=soon", "follower=a%20b", "follower=" + strings.Repeat("a", 65)} {
		t.Run(q, func(t *testing.T) {
			testkit.WantError(t, testkit.Call(t, "GET", a.URL+"/internal/v1/revocations?"+q, ""), 400, "invalid_request")
		})
	}
}

// TestLogoutWaitsForFollowers: a follower acknowledging the current generation waits for the next revocation;
// a logout answers only once that follower has acknowledged the answer that carries it, and waits no longer
// than settleLimit for a follower that never does.
func TestLogoutWaitsForFollowers(t *testing.T) {
	a := startAuth(t, nil)
	c := testkit.HTTPClient(t, a.URL)
	register(t, a.URL, "feed@example.com", "correct horse battery", "Feed")

	first, err := askFeed(c, a.URL, url.Values{"follower": {"t1"}, "wait": {"5s"}})
	if err != nil {
		t.Fatalf("first question: %v", err)
	}
	if first.Generation == "" || first.AsOf.IsZero() {
		t.Fatalf("first answer: got %+v; want a generation and as_of", first)
	}

	logout := func(token string) <-chan int {
		done := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest("DELETE", a.URL+"/v1/sessions/current", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := c.Do(req)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		return done
	}

	s := login(t, a.URL, "feed@example.com", "correct horse battery")
	waiting := make(chan feedAnswer, 1)
	go func() {
		ans, err := askFeed(c, a.URL, url.Values{"follower": {"t1"}, "wait": {"5s"}, "ack": {first.Generation}})
		if err != nil {
			t.Errorf("waiting question: %v", err)
		}
		waiting <- ans
	}()
	select {
	case ans := <-waiting:
		t.Fatalf("a question acknowledging the current generation: answered at once with %+v; want it to wait", ans)
	case <-time.After(200 * time.Millisecond):
	}

	done := logout(s.Token)
	var news feedAnswer
	select {
	case news = <-waiting:
	case <-time.After(3 * time.Second):
		t.Fatal("waiting question: no answer 3s after a logout")
	}
	var claims jwt.Claims
	tok, err := jwt.ParseSigned(s.Token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	_ = tok.UnsafeClaimsWithoutVerification(&claims)
	if !news.has(claims.ID) {
		t.Fatalf("answer after the logout: got %+v; want session %s in it", news.Revocations, claims.ID)
	}
	select {
	case code := <-done:
		t.Fatalf("logout: answered %d before its follower acknowledged", code)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := askFeed(c, a.URL, url.Values{"follower": {"t1"}, "wait": {"0s"}, "ack": {news.Generation}}); err != nil {
		t.Fatalf("acknowledging: %v", err)
	}
	select {
	case code := <-done:
		if code != http.StatusNoContent {
			t.Fatalf("logout: got %d; want 204", code)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("logout: no answer 3s after its follower acknowledged")
	}

	// A follower that stops asking holds a logout up no longer than settleLimit.
	s2 := login(t, a.URL, "feed@example.com", "correct horse battery")
	start := time.Now()
	select {
	case code := <-logout(s2.Token):
		if code != http.StatusNoContent {
			t.Fatalf("logout with a silent follower: got %d; want 204", code)
		}
		if took := time.Since(start); took < settleLimit {
			t.Fatalf("logout with a silent follower: answered after %s; want it to wait %s for the follower", took, settleLimit)
		}
	case <-time.After(settleLimit + 5*time.Second):
		t.Fatalf("logout with a silent follower: no answer after %s", settleLimit+5*time.Second)
	}
}
