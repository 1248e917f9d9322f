// Package idem is what the services that take an Idempotency-Key share (orders' checkout, payments' charge,
// catalog's stock adjustment): the key read from its header, the request's fingerprint stored beside it, and
// the conflict a key used again for another request answers. The answer stored for a key is a web.Answer.
package idem

import (
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

// ErrKeyReused is the answer to a key used before for another request: 409 idempotency_key_reused.
var ErrKeyReused = &web.Error{Status: http.StatusConflict, Code: "idempotency_key_reused",
	Message: "this Idempotency-Key was used for a different request; use a new key"}
