package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strconv"
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
	feed := func(ctx context.Context, q FeedQuestion) (FeedAnswer, error) {
		asOf := time.Now()
		mu.Lock()
		d, g, out := down, strconv.Itoa(gen), []Revocation{}
		for _, r := range revoked {
			if r.RevokedAt.After(q.Since) {
				out = append(out, r)
			}
		}
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
		return FeedAnswer{Revocations: out, AsOf: asOf, Generation: g}, nil
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
	revoked = append(revoked, Revocation{SessionID: "ses_gone", ExpiresAt: time.Now().Add(time.Hour), RevokedAt: time.Now()})
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
