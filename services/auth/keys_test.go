package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"shoplab/lab/testkit"
)

// kidOf is the key id in a token's header.
func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Signatures[0].Header.KeyID
}

func publishedKids(t *testing.T, base string) map[string]bool {
	t.Helper()
	var set jose.JSONWebKeySet
	testkit.Call(t, "GET", base+"/v1/jwks", "").Decode(t, &set)
	out := map[string]bool{}
	for _, k := range set.Keys {
		out[k.KeyID] = true
	}
	return out
}

// TestSigningKeyLifecycle: keys rotate on schedule, a token of the previous key keeps verifying while that key
// is published, a key past its retire time leaves the JWKS with its seed deleted and its tokens are refused,
// and no seed is ever in the database in the clear.
func TestSigningKeyLifecycle(t *testing.T) {
	a := startAuth(t, map[string]string{"AUTH_KEY_ROTATION": "1s", "JWKS_REFRESH": "300ms"})
	register(t, a.URL, "rotor@example.com", "round and round", "Rotor")
	first := login(t, a.URL, "rotor@example.com", "round and round")
	kid1 := kidOf(t, first.Token)

	var second sessionAnswer
	deadline := time.Now().Add(10 * time.Second)
	for {
		second = login(t, a.URL, "rotor@example.com", "round and round")
		if kidOf(t, second.Token) != kid1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("signing key: still %s after 10s; want a new key every 1s (AUTH_KEY_ROTATION)", kid1)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+first.Token); r.Status != 200 {
		t.Fatalf("token of the previous key: got %d %s; want 200 while that key is published", r.Status, r.Body)
	}
	if kids := publishedKids(t, a.URL); !kids[kid1] || !kids[kidOf(t, second.Token)] {
		t.Fatalf("jwks: got %v; want both %s and the new key", kids, kid1)
	}

	var clear, sealed int
	if err := a.db.QueryRow(`SELECT count(seed), count(sealed_seed) FROM signing_keys`).Scan(&clear, &sealed); err != nil {
		t.Fatal(err)
	}
	if clear != 0 || sealed < 2 {
		t.Fatalf("seeds in the database: got %d in the clear and %d sealed; want 0 and at least 2", clear, sealed)
	}
	var blob []byte
	if err := a.db.QueryRow(`SELECT sealed_seed FROM signing_keys WHERE kid = $1`, kid1).Scan(&blob); err != nil {
		t.Fatal(err)
	}
	other, _ := newSealer(bytes.Repeat([]byte{7}, kekSize))
	if _, err := other.open(kid1, blob); err == nil {
		t.Fatal("a sealed seed opened with another key-encryption key; want a refusal")
	}

	// Retirement: the key's retire time has come; the next maintenance round retires it.
	if _, err := a.db.Exec(`UPDATE signing_keys SET retire_at = now() - interval '1 second' WHERE kid = $1`, kid1); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for publishedKids(t, a.URL)[kid1] {
		if time.Now().After(deadline) {
			t.Fatalf("jwks: key %s still published 10s after its retire time", kid1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var gone bool
	if err := a.db.QueryRow(`SELECT sealed_seed IS NULL AND retired_at IS NOT NULL FROM signing_keys WHERE kid = $1`, kid1).Scan(&gone); err != nil || !gone {
		t.Fatalf("retired key %s: seed deleted and retired_at set: got %v, %v; want true", kid1, gone, err)
	}
	// auth's own verifier fetches the key set again every JWKS_REFRESH: within a few seconds the retired
	// key's token is refused.
	deadline = time.Now().Add(5 * time.Second)
	for {
		r := testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+first.Token)
		if r.Status == 401 {
			testkit.WantError(t, r, 401, "invalid_token")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token of a retired key: got %d; want 401 invalid_token", r.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestClearSeedsAreSealed: a database written by an earlier version (its seed in the clear) is sealed at start
// and its key keeps signing, so nobody is logged out by the upgrade.
func TestClearSeedsAreSealed(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	a := startAuth(t, map[string]string{"DATABASE_URL": dsn})
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	legacy, err := newSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	// The newest key, as the earlier version stored it: seed in the clear, nothing sealed.
	if _, err := a.db.Exec(`INSERT INTO signing_keys (kid, public_key, seed, created_at) VALUES ($1, $2, $3, now() + interval '1 minute')`,
		legacy.kid, []byte(legacy.public()), legacy.seed()); err != nil {
		t.Fatal(err)
	}
	b := startAuth(t, map[string]string{"DATABASE_URL": dsn})
	var clear int
	if err := b.db.QueryRow(`SELECT count(seed) FROM signing_keys`).Scan(&clear); err != nil || clear != 0 {
		t.Fatalf("clear seeds after start: got %d, %v; want 0", clear, err)
	}
	register(t, b.URL, "upgrade@example.com", "still logged in", "Up")
	if got := kidOf(t, login(t, b.URL, "upgrade@example.com", "still logged in").Token); got != legacy.kid {
		t.Fatalf("signing key after the upgrade: got %s; want the sealed legacy key %s", got, legacy.kid)
	}
}

func TestKeyEncryptionKeyIsRequired(t *testing.T) {
	file := t.TempDir() + "/auth.kek"
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none", map[string]string{}, "AUTH_KEY_ENCRYPTION_KEY_FILE"},
		{"not base64", map[string]string{"AUTH_KEY_ENCRYPTION_KEY": "***"}, "base64"},
		{"too short", map[string]string{"AUTH_KEY_ENCRYPTION_KEY": "c2hvcnQ="}, "32"},
		{"both", map[string]string{"AUTH_KEY_ENCRYPTION_KEY": testkit.AuthTestKEK, "AUTH_KEY_ENCRYPTION_KEY_FILE": file}, "not both"},
		{"old variable", map[string]string{"AUTH_KEY_ENCRYPTION_KEY": testkit.AuthTestKEK, "AUTH_SIGNING_KEY_FILE": file}, "no longer read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run: got %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}
