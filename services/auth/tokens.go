package main

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/authn"
)

// signingKey is an Ed25519 key with its key id (the JWK SHA-256 thumbprint of the public key).
type signingKey struct {
	kid  string
	priv ed25519.PrivateKey
}

func keyFromSeed(seed []byte) (signingKey, error) {
	if len(seed) != ed25519.SeedSize {
		return signingKey{}, fmt.Errorf("signing key seed is %d bytes; want %d", len(seed), ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	jwk := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(jose.EdDSA)}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, fmt.Errorf("key thumbprint: %w", err)
	}
	return signingKey{kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv}, nil
}

func newSigningKey() (signingKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return signingKey{}, err
	}
	return keyFromSeed(seed)
}

func (k signingKey) public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }
func (k signingKey) seed() []byte              { return k.priv.Seed() }

// sealer encrypts signing-key seeds with the key-encryption key (AES-256-GCM from the standard library), so
// the database never holds a private key in the clear. The kid is the additional data: a sealed seed cannot
// be moved to another key's row.
type sealer struct{ aead cipher.AEAD }

// kekSize is the key-encryption key's size in bytes (AES-256).
const kekSize = 32

func newSealer(kek []byte) (*sealer, error) {
	if len(kek) != kekSize {
		return nil, fmt.Errorf("the key-encryption key is %d bytes; want %d", len(kek), kekSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(kid string, seed []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, seed, []byte(kid)), nil
}

func (s *sealer) open(kid string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, fmt.Errorf("sealed seed of key %s is too short", kid)
	}
	seed, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("open the seed of key %s (is AUTH_KEY_ENCRYPTION_KEY the one it was sealed with?): %w", kid, err)
	}
	return seed, nil
}

// keyPolicy is the signing-key lifecycle.
type keyPolicy struct {
	rotation time.Duration // a new key every rotation (AUTH_KEY_ROTATION)
	// retireAfter is how long a superseded key stays published: the longest token it signed (the token TTL)
	// plus the verifiers' expiry leeway and a margin.
	retireAfter time.Duration
}

// sealedKey is a signing key as the database keeps it.
type sealedKey struct {
	kid    string
	public ed25519.PublicKey
	sealed []byte
}

// keyStore is what the key ring needs of the database.
type keyStore interface {
	// MaintainKeys, under a lock all replicas share: seals any seed still stored in the clear (with seal),
	// inserts candidate when there is no key that can sign or the newest is older than policy.rotation (the
	// keys it supersedes get a retire time), retires keys whose retire time has passed (seed deleted, no
	// longer published), and returns the newest key that can sign.
	MaintainKeys(ctx context.Context, candidate sealedKey, p keyPolicy, seal func(kid string, seed []byte) ([]byte, error)) (sealedKey, error)
}

// keyRing keeps the key this instance signs with current: at start and then regularly it lets the store
// rotate and retire keys, and switches to the newest key, which every replica then signs with.
type keyRing struct {
	store  keyStore
	sealer *sealer
	policy keyPolicy
	log    hclog.Logger

	current atomic.Pointer[activeKey]
}

// activeKey is the key being signed with and its signer.
type activeKey struct {
	signingKey
	signer jose.Signer
}

func newKeyRing(store keyStore, s *sealer, p keyPolicy, log hclog.Logger) *keyRing {
	return &keyRing{store: store, sealer: s, policy: p, log: log.Named("keys")}
}

// refresh runs one round of maintenance and loads the newest key.
func (kr *keyRing) refresh(ctx context.Context) error {
	cand, err := newSigningKey()
	if err != nil {
		return err
	}
	sealed, err := kr.sealer.seal(cand.kid, cand.seed())
	if err != nil {
		return err
	}
	got, err := kr.store.MaintainKeys(ctx, sealedKey{kid: cand.kid, public: cand.public(), sealed: sealed}, kr.policy, kr.sealer.seal)
	if err != nil {
		return fmt.Errorf("maintain signing keys: %w", err)
	}
	if cur := kr.current.Load(); cur != nil && cur.kid == got.kid {
		return nil
	}
	seed, err := kr.sealer.open(got.kid, got.sealed)
	if err != nil {
		return err
	}
	k, err := keyFromSeed(seed)
	if err != nil {
		return err
	}
	if k.kid != got.kid {
		return fmt.Errorf("signing key %s: the stored seed belongs to key %s", got.kid, k.kid)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return fmt.Errorf("ed25519 signer: %w", err)
	}
	if old := kr.current.Swap(&activeKey{signingKey: k, signer: signer}); old != nil {
		kr.log.Info("signing with a new key", "kid", k.kid, "previous", old.kid)
	} else {
		kr.log.Info("signing key loaded", "kid", k.kid)
	}
	return nil
}

// run refreshes every interval until ctx ends; a failed round is logged and retried at the next one (the
// current key keeps signing meanwhile).
func (kr *keyRing) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := kr.refresh(rctx); err != nil && ctx.Err() == nil {
			kr.log.Warn("signing-key maintenance failed; keeping the current key", "error", err)
		}
		cancel()
	}
}

// checkEvery is how often the ring looks for a due rotation: a quarter of the rotation period, at most a minute.
func (p keyPolicy) checkEvery() time.Duration {
	return min(max(p.rotation/4, 100*time.Millisecond), time.Minute)
}

// issuer signs session tokens with the key ring's current key.
type issuer struct {
	keys *keyRing
	ttl  time.Duration
	now  func() time.Time
}

func newIssuer(keys *keyRing, ttl time.Duration) *issuer {
	return &issuer{keys: keys, ttl: ttl, now: time.Now}
}

// sessionClaims are the private claims of a session token beside the registered ones.
type sessionClaims struct {
	Roles []string `json:"roles"`
}

// issue signs a token for the session of userID with its roles; it returns the token and its expiry.
func (i *issuer) issue(userID, sessionID string, roles []string, ttl time.Duration) (string, time.Time, error) {
	k := i.keys.current.Load()
	if k == nil {
		return "", time.Time{}, errors.New("no signing key loaded")
	}
	if ttl <= 0 {
		ttl = i.ttl
	}
	if roles == nil {
		roles = []string{}
	}
	now := i.now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	tok, err := jwt.Signed(k.signer).Claims(jwt.Claims{
		Issuer: authn.Issuer, Audience: jwt.Audience{authn.Audience}, Subject: userID, ID: sessionID,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}).Claims(sessionClaims{Roles: roles}).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return tok, exp, nil
}

// jwks turns public keys into a JSON Web Key Set.
func jwks(keys []signingKeyPublic) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.public, KeyID: k.kid, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	return set
}

// signingKeyPublic is a published key.
type signingKeyPublic struct {
	kid    string
	public ed25519.PublicKey
}
