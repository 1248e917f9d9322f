package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

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

// keyStore keeps signing keys in the database.
type keyStore interface {
	// SigningKey returns the newest key with a stored seed, storing candidate first if there is none.
	SigningKey(ctx context.Context, candidate signingKey) (signingKey, error)
	// PublishKey records the public half of a key kept elsewhere.
	PublishKey(ctx context.Context, k signingKey) error
}

// loadSigningKey returns the key this instance signs with. With file set, the seed lives in that file (created
// with mode 0600 on first start) and only the public key goes to the database; otherwise the database keeps
// it, so every replica signs with the same key and restarts do not log anyone out.
func loadSigningKey(ctx context.Context, store keyStore, file string) (signingKey, error) {
	if file == "" {
		cand, err := newSigningKey()
		if err != nil {
			return signingKey{}, err
		}
		k, err := store.SigningKey(ctx, cand)
		if err != nil {
			return signingKey{}, fmt.Errorf("load signing key: %w", err)
		}
		return k, nil
	}
	k, err := keyFromFile(file)
	if err != nil {
		return signingKey{}, err
	}
	if err := store.PublishKey(ctx, k); err != nil {
		return signingKey{}, fmt.Errorf("publish signing key: %w", err)
	}
	return k, nil
}

func keyFromFile(file string) (signingKey, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		k, err := newSigningKey()
		if err != nil {
			return signingKey{}, err
		}
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return signingKey{}, fmt.Errorf("create signing key file (AUTH_SIGNING_KEY_FILE): %w", err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k.seed()) + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return signingKey{}, fmt.Errorf("write signing key file: %w", werr)
		}
		return k, nil
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("read signing key file (AUTH_SIGNING_KEY_FILE): %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return signingKey{}, fmt.Errorf("signing key file %s: not base64: %w", file, err)
	}
	return keyFromSeed(seed)
}

// issuer signs session tokens.
type issuer struct {
	key    signingKey
	signer jose.Signer
	ttl    time.Duration
	now    func() time.Time
}

func newIssuer(k signingKey, ttl time.Duration) *issuer {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		panic(fmt.Sprintf("ed25519 signer: %v", err)) // only an unsupported algorithm fails, and EdDSA is supported
	}
	return &issuer{key: k, signer: signer, ttl: ttl, now: time.Now}
}

// issue signs a token for the session of userID; it returns the token and its expiry.
func (i *issuer) issue(userID, sessionID string) (string, time.Time, error) {
	now := i.now().UTC().Truncate(time.Second)
	exp := now.Add(i.ttl)
	tok, err := jwt.Signed(i.signer).Claims(jwt.Claims{
		Issuer: authn.Issuer, Audience: jwt.Audience{authn.Audience}, Subject: userID, ID: sessionID,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}).Serialize()
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
