// Package idem is what the services that take an Idempotency-Key share (orders' checkout, payments' charge,
// catalog's stock adjustment): the key read from its header, the request's fingerprint stored beside it, and
// the conflict a key used again for another request answers. The answer stored for a key is a web.Answer.
package idem

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net/http"
	"regexp"

	"shoplab/internal/web"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

var keyRe = regexp.MustCompile(`^[\x21-\x7e]{1,64}$`)

// Key reads the request's Idempotency-Key: 1 to 64 visible ASCII characters, required (400 otherwise).
func Key(r *http.Request) (string, error) {
	k := r.Header.Get(Header)
	if !keyRe.MatchString(k) {
		return "", web.BadRequest("%s header is required: 1 to 64 visible ASCII characters", Header)
	}
	return k, nil
}

// Fingerprint identifies what a request asked, to tell its repeat (the same key, the same request) from
// another request under the same key: a SHA-256 digest of the request's fields formatted as format says.
func Fingerprint(format string, fields ...any) []byte {
	h := sha256.Sum256(fmt.Appendf(nil, format, fields...))
	return h[:]
}

// KeySize is the size in bytes of a Fingerprinter's key.
const KeySize = 32

// Fingerprinter makes keyed fingerprints — HMAC-SHA-256 under the service's secret key — for requests that carry
// what must never be stored, a card's number and CVC: the fingerprint covers the whole request, so the same
// Idempotency-Key with another card is told apart, and without the key a stored fingerprint cannot be tested
// against guessed card numbers. Every instance of a service must have the same key.
type Fingerprinter struct{ key []byte }

// NewFingerprinter makes fingerprints under key (KeySize bytes).
func NewFingerprinter(key []byte) Fingerprinter { return Fingerprinter{key: key} }

// Of is the keyed fingerprint of the request's fields formatted as format says.
func (f Fingerprinter) Of(format string, fields ...any) []byte {
	m := hmac.New(sha256.New, f.key)
	fmt.Fprintf(m, format, fields...)
	return m.Sum(nil)
}

// Same reports whether a stored fingerprint is this request's, in constant time.
func Same(stored, fingerprint []byte) bool { return hmac.Equal(stored, fingerprint) }

// ErrKeyReused is the answer to a key used before for another request: 409 idempotency_key_reused.
var ErrKeyReused = &web.Error{Status: http.StatusConflict, Code: "idempotency_key_reused",
	Message: "this Idempotency-Key was used for a different request; use a new key"}
