package mesh

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
)

// TestCertificateWaitsForRoots: a leaf that arrived before the CA roots is not presented (a handshake then
// could not verify the peer and would fail); with the roots it is.
func TestCertificateWaitsForRoots(t *testing.T) {
	id := &Identity{service: "payments"}
	leaf := &tls.Certificate{}
	id.leaf.Store(leaf)
	if c, err := id.certificate(); !errors.Is(err, errNoCertificate) {
		t.Fatalf("leaf without roots: got %v, %v; want %v", c, err, errNoCertificate)
	}
	id.roots.Store(&rootSet{pool: x509.NewCertPool()})
	if c, err := id.certificate(); err != nil || c != leaf {
		t.Fatalf("leaf with roots: got %v, %v; want the leaf", c, err)
	}
}
