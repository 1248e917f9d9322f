package idem

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"shoplab/internal/web"
)

// TestKey: the key's format, with one answer for every bad one.
func TestKey(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"a uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"one character", "k", true},
		{"64 characters", strings.Repeat("k", 64), true},
		{"missing", "", false},
		{"65 characters", strings.Repeat("k", 65), false},
		{"a space", "my key", false},
		{"not ASCII", "clé", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		if tt.key != "" {
			r.Header.Set(Header, tt.key)
		}
		got, err := Key(r)
		var we *web.Error
		switch {
		case tt.ok && (err != nil || got != tt.key):
			t.Errorf("%s: got %q, %v; want the key", tt.name, got, err)
		case !tt.ok && (!errors.As(err, &we) || we.Status != 400 || we.Code != "invalid_request"):
			t.Errorf("%s: got %q, %v; want 400 invalid_request", tt.name, got, err)
		}
	}
}

// TestFingerprint: the same fields give the same print, any other field another.
func TestFingerprint(t *testing.T) {
	a := Fingerprint("%d|%q", 5, "restock")
	if !bytes.Equal(a, Fingerprint("%d|%q", 5, "restock")) {
		t.Error("the same request: got two prints; want one")
	}
	for _, other := range [][]byte{Fingerprint("%d|%q", 6, "restock"), Fingerprint("%d|%q", 5, "restock!")} {
		if bytes.Equal(a, other) {
			t.Error("another request: got the same print; want another")
		}
	}
}

// TestFingerprinter: the same request under the same key has one fingerprint; another field or another key
// gives another, and none is the plain digest anyone could compute.
func TestFingerprinter(t *testing.T) {
	a, b := NewFingerprinter(bytes.Repeat([]byte{1}, KeySize)), NewFingerprinter(bytes.Repeat([]byte{2}, KeySize))
	req := a.Of("%q|%q", "4242424242424242", "123")
	tests := []struct {
		name string
		got  []byte
		same bool
	}{
		{"the same request", a.Of("%q|%q", "4242424242424242", "123"), true},
		{"another CVC", a.Of("%q|%q", "4242424242424242", "999"), false},
		{"another card, the same last four", a.Of("%q|%q", "4242004242424242", "123"), false},
		{"another service's key", b.Of("%q|%q", "4242424242424242", "123"), false},
		{"the unkeyed digest", Fingerprint("%q|%q", "4242424242424242", "123"), false},
	}
	for _, tc := range tests {
		if got := Same(req, tc.got); got != tc.same {
			t.Errorf("%s: got same=%v; want %v", tc.name, got, tc.same)
		}
	}
}
