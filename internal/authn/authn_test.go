package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

type testKey struct {
	kid  string
	priv ed25519.PrivateKey
}

func newTestKey(t *testing.T, kid string) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, priv: priv}
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(jose.EdDSA), Use: "sig"}
}

func (k testKey) sign(t *testing.T, sub, sid string, roles []string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: Issuer, Audience: jwt.Audience{Audience}, Subject: sub, ID: sid,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Claims(privateClaims{Roles: roles}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func activeFor(user string) SessionCheck {
	return func(context.Context, string) (string, bool, error) { return user, true, nil }
}

// TestKnownKeysNeverWaitForAFetch: while a fetch triggered by an unknown kid hangs, tokens of known keys still
// verify at once; refetches on unknown kids are at most one per MinRefresh.
func TestKnownKeysNeverWaitForAFetch(t *testing.T) {
	known := newTestKey(t, "known")
	var (
		fetches atomic.Int32
		block   = make(chan struct{})
		once    sync.Once
	)
	keys := func(ctx context.Context) (jose.JSONWebKeySet, error) {
		if fetches.Add(1) > 1 {
			select { // every fetch after the first hangs until released
			case <-block:
			case <-ctx.Done():
				return jose.JSONWebKeySet{}, ctx.Err()
			}
		}
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{known.jwk()}}, nil
	}
	v := NewVerifier(keys, activeFor("usr_1"), Options{MinRefresh: time.Millisecond})
	if _, err := v.Verify(context.Background(), known.sign(t, "usr_1", "ses_1", nil)); err != nil {
		t.Fatalf("first verification: %v", err)
	}
	time.Sleep(5 * time.Millisecond)
	unknown := newTestKey(t, "unknown").sign(t, "usr_1", "ses_2", nil)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = v.Verify(ctx, unknown) // hangs in the fetch
	}()
	for fetches.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for range 100 {
		if _, err := v.Verify(context.Background(), known.sign(t, "usr_1", "ses_1", nil)); err != nil {
			t.Fatalf("known key during a hanging fetch: %v", err)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("100 verifications during a hanging fetch took %s; want them not to wait for it", took)
	}
	once.Do(func() { close(block) })

	// Rate limit: with a long MinRefresh, 20 tokens of unknown keys cause one fetch, not 20.
	var n atomic.Int32
	v2 := NewVerifier(func(context.Context) (jose.JSONWebKeySet, error) {
		n.Add(1)
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{known.jwk()}}, nil
	}, activeFor("usr_1"), Options{MinRefresh: time.Hour})
	for i := range 20 {
		_, err := v2.Verify(context.Background(), newTestKey(t, "k"+string(rune('a'+i))).sign(t, "usr_1", "s", nil))
		if !errors.Is(err, ErrBadSig) {
			t.Fatalf("unknown kid: got %v; want ErrBadSig", err)
		}
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("fetches for 20 unknown kids: got %d; want 1", got)
	}
}

func TestVerifyChecksSessionOwnerAndRoles(t *testing.T) {
	k := newTestKey(t, "k1")
	set := func(context.Context) (jose.JSONWebKeySet, error) {
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.jwk()}}, nil
	}
	tests := []struct {
		name    string
		owner   string
		active  bool
		roles   []string
		wantErr error
	}{
		{"own active session", "usr_a", true, []string{"admin"}, nil},
		{"session of another user", "usr_b", true, nil, ErrRevoked},
		{"revoked session", "usr_a", false, nil, ErrRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(set, func(context.Context, string) (string, bool, error) { return tc.owner, tc.active, nil }, Options{})
			c, err := v.Verify(context.Background(), k.sign(t, "usr_a", "ses_x", tc.roles))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("verify: got %v; want %v", err, tc.wantErr)
			}
			if err == nil && !c.HasRole("admin") {
				t.Fatalf("roles: got %v; want admin", c.Roles)
			}
		})
	}
}

func TestRefreshDropsRetiredKeys(t *testing.T) {
	old, cur := newTestKey(t, "old"), newTestKey(t, "cur")
	published := []jose.JSONWebKey{old.jwk(), cur.jwk()}
	var mu sync.Mutex
	v := NewVerifier(func(context.Context) (jose.JSONWebKeySet, error) {
		mu.Lock()
		defer mu.Unlock()
		return jose.JSONWebKeySet{Keys: published}, nil
	}, activeFor("u"), Options{MinRefresh: time.Hour})
	tok := old.sign(t, "u", "s", nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("old key while published: %v", err)
	}
	mu.Lock()
	published = []jose.JSONWebKey{cur.jwk()}
	mu.Unlock()
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrBadSig) {
		t.Fatalf("old key after it was retired: got %v; want ErrBadSig", err)
	}
}

// TestFollowedRevocations: while the feed answers, sessions are checked against its set alone (auth is not
// asked); a session the feed reports is refused; when the feed stops answering, each session is asked about
// again once MaxStale has passed.
func TestFollowedRevocations(t *testing.T) {
	k := newTestKey(t, "k")
	var asked atomic.Int32
	v := NewVerifier(func(context.Context) (jose.JSONWebKeySet, error) {
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.jwk()}}, nil
	}, func(context.Context, string) (string, bool, error) {
		asked.Add(1)
		return "usr_1", true, nil
	}, Options{})

	var (
		mu      sync.Mutex
		revoked []Revocation
		down    bool
	)
	gen := 0 // counts revocations, as auth's generations do
	feed := func(ctx context.Context, q FeedQuestion, _ func()) (FeedAnswer, error) {
		mu.Lock()
		d, g := down, strconv.Itoa(gen)
		from, _ := strconv.Atoi(q.Cursor)
		out := append([]Revocation{}, revoked[from:]...)
		mu.Unlock()
		if d {
			return FeedAnswer{}, errors.New("auth unreachable")
		}
		if q.Ack == g {
			select { // long poll: nothing new since the last answer
			case <-time.After(q.Wait):
			case <-ctx.Done():
			}
		}
		return FeedAnswer{Revocations: out, Cursor: strconv.Itoa(from + len(out)), Generation: g}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Follow(ctx, feed, FeedOptions{Wait: 50 * time.Millisecond, MaxStale: 300 * time.Millisecond}, nil)
	for !v.feedFresh() {
		time.Sleep(5 * time.Millisecond)
	}

	good, gone := k.sign(t, "usr_1", "ses_good", nil), k.sign(t, "usr_1", "ses_gone", nil)
	for range 50 {
		if _, err := v.Verify(context.Background(), good); err != nil {
			t.Fatalf("verify with a current feed: %v", err)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("session checks with a current feed: got %d; want 0", n)
	}
	mu.Lock()
	revoked = append(revoked, Revocation{SessionID: "ses_gone", ExpiresAt: time.Now().Add(time.Hour)})
	gen++
	mu.Unlock()
	deadline := time.Now().Add(time.Second)
	for {
		if _, err := v.Verify(context.Background(), gone); errors.Is(err, ErrRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a session the feed reports revoked: still accepted after 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	mu.Lock()
	down = true
	mu.Unlock()
	time.Sleep(400 * time.Millisecond) // past MaxStale
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatalf("verify with a stale feed: %v", err)
	}
	if n := asked.Load(); n != 1 {
		t.Fatalf("session checks with a stale feed: got %d; want 1 (auth asked again)", n)
	}
}

// TestHeartbeatsKeepTheFeedCurrent: a question held far longer than MaxStale keeps the set current on its
// heartbeats alone; when they stop (auth frozen, or no longer vouching), the set goes stale within MaxStale and
// sessions are checked with auth again.
func TestHeartbeatsKeepTheFeedCurrent(t *testing.T) {
	v := NewVerifier(nil, nil, Options{})
	var beating atomic.Bool
	beating.Store(true)
	feed := func(ctx context.Context, q FeedQuestion, alive func()) (FeedAnswer, error) {
		if q.Ack == "" {
			return FeedAnswer{Cursor: "0", Generation: "g"}, nil
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return FeedAnswer{}, ctx.Err()
			case <-tick.C:
				if beating.Load() {
					alive()
				}
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Follow(ctx, feed, FeedOptions{Wait: time.Minute, MaxStale: 200 * time.Millisecond}, nil)
	time.Sleep(100 * time.Millisecond)
	for i := range 10 { // 1 s: five times MaxStale, with no answer but the first
		if !v.feedFresh() {
			t.Fatalf("after %d ms of heartbeats: got a stale set; want it current", 100*i+100)
		}
		time.Sleep(100 * time.Millisecond)
	}
	beating.Store(false)
	time.Sleep(300 * time.Millisecond)
	if v.feedFresh() {
		t.Fatal("300 ms after the heartbeats stopped: got a current set; want it stale (MaxStale 200 ms)")
	}
}

// TestReadFeedStream: heartbeats that vouch call alive, muted ones do not; the answer ends the stream; a stream
// without one, or with a line that is not JSON, is an error; a silent stream is given up.
func TestReadFeedStream(t *testing.T) {
	for _, c := range []struct {
		name, in string
		alive    int
		want     string // the answer's generation, or the error's text
	}{
		{"answer at once", `{"revocations":[],"cursor":"7.0","generation":"e.1"}` + "\n", 0, "e.1"},
		{"heartbeats, then the answer", `{"heartbeat":true}` + "\n" + `{"heartbeat":true}` + "\n" +
			`{"revocations":[{"session_id":"s"}],"cursor":"8.0","generation":"e.2"}` + "\n", 2, "e.2"},
		{"muted heartbeats vouch for nothing", `{"heartbeat":false}` + "\n" + `{"heartbeat":true}` + "\n" +
			`{"cursor":"8.0","generation":"e.2"}`, 1, "e.2"},
		{"ends without an answer", `{"heartbeat":true}` + "\n", 1, "the stream ended without an answer"},
		{"not JSON", "<html>\n", 0, "not JSON"},
		{"an answer without a generation", `{"revocations":[]}` + "\n", 0, "without a generation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			alive := 0
			a, err := ReadFeedStream(strings.NewReader(c.in), func() { alive++ }, func() {})
			got := a.Generation
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, c.want) || alive != c.alive {
				t.Fatalf("got %q with %d heartbeats; want %q with %d", got, alive, c.want, c.alive)
			}
		})
	}
	t.Run("silence", func(t *testing.T) {
		r, w := io.Pipe()
		defer w.Close()
		start := time.Now()
		_, err := ReadFeedStream(r, func() {}, func() { r.CloseWithError(errors.New("given up")) })
		if took := time.Since(start); err == nil || took < FeedSilence || took > FeedSilence+time.Second {
			t.Fatalf("a silent stream: got %v after %s; want it given up after %s", err, took, FeedSilence)
		}
	})
}
