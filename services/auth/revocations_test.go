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

	"shoplab/internal/authn"
	"shoplab/lab/testkit"
)

type feedAnswer struct {
	Revocations []revocation `json:"revocations"`
	More        bool         `json:"more"`
	Cursor      string       `json:"cursor"`
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
	for _, q := range []string{"cursor=yesterday", "cursor=1", "cursor=1.-1", "cursor=-1.0", "wait=1h", "wait=soon", "wait=11s",
		"stream=true&wait=31s", "stream=maybe", "follower=a%20b", "follower=" + strings.Repeat("a", 65)} {
		t.Run(q, func(t *testing.T) {
			testkit.WantError(t, testkit.CallAs(t, "catalog", "GET", a.URL+"/internal/v1/revocations?"+q, ""), 400, "invalid_request")
		})
	}
}

// TestLogoutWaitsForFollowers: a follower acknowledging the current generation waits for the next revocation;
// a logout answers only once that follower has acknowledged the answer that carries it, and waits no longer
// than settleLimit for a follower that never does.
func TestLogoutWaitsForFollowers(t *testing.T) {
	a := startAuth(t, nil)
	c := testkit.HTTPClientAs(t, "catalog", a.URL)
	register(t, a.URL, "feed@example.com", "correct horse battery", "Feed")

	first, err := askFeed(c, a.URL, url.Values{"follower": {"t1"}, "wait": {"5s"}})
	if err != nil {
		t.Fatalf("first question: %v", err)
	}
	if first.Generation == "" || first.Cursor == "" {
		t.Fatalf("first answer: got %+v; want a generation and a cursor", first)
	}

	logout := func(token string) <-chan int { return logoutAsync(c, a.URL, token) }

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

// sessionOf is the session id a token names.
func sessionOf(t *testing.T, token string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	_ = tok.UnsafeClaimsWithoutVerification(&claims)
	return claims.ID
}

// logoutAsync logs token out in the background; the channel gets the status (0 when the call failed).
func logoutAsync(c *http.Client, base, token string) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("DELETE", base+"/v1/sessions/current", nil)
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

// streamFeed asks a streamed question; it returns the heartbeats that vouched, those that did not, and the
// answer that ended the stream.
func streamFeed(c *http.Client, base string, q url.Values) (vouched, muted int, a feedAnswer, err error) {
	q.Set("stream", "true")
	resp, err := c.Get(base + "/internal/v1/revocations?" + q.Encode())
	if err != nil {
		return 0, 0, a, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
		return 0, 0, a, fmt.Errorf("streamed question: got %d %s; want 200 application/x-ndjson", resp.StatusCode, ct)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Heartbeat *bool `json:"heartbeat"`
			feedAnswer
		}
		if err := dec.Decode(&line); err != nil {
			return vouched, muted, a, fmt.Errorf("streamed question: %w", err)
		}
		switch {
		case line.Heartbeat == nil:
			return vouched, muted, line.feedAnswer, nil
		case *line.Heartbeat:
			vouched++
		default:
			muted++
		}
	}
}

// TestStreamedQuestion: an up-to-date follower's streamed question is held with a heartbeat every
// authn.FeedHeartbeat and ends with the answer at its wait — or at once after a logout, carrying it; a logout
// waits for a streaming follower that asked long ago (it is connected), until it acknowledges.
func TestStreamedQuestion(t *testing.T) {
	a := startAuth(t, nil)
	c := testkit.HTTPClientAs(t, "catalog", a.URL)
	register(t, a.URL, "stream@example.com", "correct horse battery", "Stream")
	first, err := askFeed(c, a.URL, url.Values{"follower": {"s1"}})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	beats, muted, quiet, err := streamFeed(c, a.URL, url.Values{"follower": {"s1"}, "wait": {"2s"}, "ack": {first.Generation}, "cursor": {first.Cursor}})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if want := int(2 * time.Second / authn.FeedHeartbeat); beats < want-1 || beats > want+1 || muted != 0 {
		t.Fatalf("a 2s streamed question: got %d heartbeats (%d muted); want about %d", beats, muted, want)
	}
	if took < 2*time.Second || took > 3*time.Second || quiet.Generation != first.Generation || len(quiet.Revocations) != 0 {
		t.Fatalf("a quiet streamed question: got %+v after %s; want no revocation, the same generation, after 2s", quiet, took)
	}

	s := login(t, a.URL, "stream@example.com", "correct horse battery")
	type result struct {
		a   feedAnswer
		err error
	}
	held := make(chan result, 1)
	go func() {
		_, _, ans, err := streamFeed(c, a.URL, url.Values{"follower": {"s1"}, "wait": {"25s"}, "ack": {quiet.Generation}, "cursor": {quiet.Cursor}})
		held <- result{ans, err}
	}()
	time.Sleep(followerActive + time.Second) // the follower asked long ago, but its question is held
	done := logoutAsync(c, a.URL, s.Token)
	var news result
	select {
	case news = <-held:
	case <-time.After(3 * time.Second):
		t.Fatal("streamed question: no answer 3s after a logout")
	}
	if news.err != nil || !news.a.has(sessionOf(t, s.Token)) {
		t.Fatalf("streamed answer after the logout: got %+v, %v; want the session in it", news.a, news.err)
	}
	select {
	case code := <-done:
		t.Fatalf("logout: answered %d before its streaming follower acknowledged", code)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := askFeed(c, a.URL, url.Values{"follower": {"s1"}, "ack": {news.a.Generation}, "cursor": {news.a.Cursor}}); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != http.StatusNoContent {
		t.Fatalf("logout: got %d; want 204", code)
	}
}

// TestLateCommitIsNotSkipped: a revocation whose transaction commits 5 s after its row was written (a stalled
// synchronous standby does that) reaches a follower that read the feed in between, and the logout that made it
// answers only after the commit. (With a cursor on the revocation's clock, less a 2 s overlap, the follower's
// read in between moved past it for good.)
func TestLateCommitIsNotSkipped(t *testing.T) {
	a := startAuth(t, nil)
	c := testkit.HTTPClientAs(t, "catalog", a.URL)
	register(t, a.URL, "late@example.com", "correct horse battery", "Late")
	slow, quick := login(t, a.URL, "late@example.com", "correct horse battery"), login(t, a.URL, "late@example.com", "correct horse battery")
	slowID := sessionOf(t, slow.Token)
	// The slow logout's transaction writes its revocation, then waits 5 s before it commits.
	for _, q := range []string{
		`CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$`,
		`CREATE TRIGGER zz_slow_commit AFTER UPDATE OF revoked_at ON sessions FOR EACH ROW WHEN (NEW.id = '` + slowID + `') EXECUTE FUNCTION test_slow_commit()`,
	} {
		if _, err := a.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	first, err := askFeed(c, a.URL, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	slowDone := logoutAsync(c, a.URL, slow.Token)
	time.Sleep(2500 * time.Millisecond)
	if code := <-logoutAsync(c, a.URL, quick.Token); code != http.StatusNoContent {
		t.Fatalf("quick logout: got %d; want 204", code)
	}
	between, err := askFeed(c, a.URL, url.Values{"cursor": {first.Cursor}})
	if err != nil {
		t.Fatal(err)
	}
	if !between.has(sessionOf(t, quick.Token)) || between.has(slowID) {
		t.Fatalf("read while the slow logout had not committed: got %+v; want the quick one only", between.Revocations)
	}
	select {
	case code := <-slowDone:
		if took := time.Since(began); code != http.StatusNoContent || took < 5*time.Second {
			t.Fatalf("slow logout: got %d after %s; want 204 after its commit, 5s", code, took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("slow logout: no answer after 15s")
	}
	after, err := askFeed(c, a.URL, url.Values{"cursor": {between.Cursor}})
	if err != nil {
		t.Fatal(err)
	}
	if !after.has(slowID) {
		t.Fatalf("read after the slow commit, from the cursor of the read in between: got %+v; want the slow session", after.Revocations)
	}
}
