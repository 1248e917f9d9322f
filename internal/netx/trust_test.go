package netx

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestTrustingTransport: a server whose certificate chains to the given CA is trusted, one that does not is
// refused; a server that closes every connection after its answer (as Patroni's REST API does) gets the second
// request on a resumed session.
func TestTrustingTransport(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
	}))
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	transport, err := TrustingTransport(ca)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: transport}
	for i, wantResumed := range []bool{false, true} {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		resp.Body.Close()
		if resp.TLS == nil || resp.TLS.DidResume != wantResumed {
			t.Errorf("request %d: got resumed %v; want %v", i+1, resp.TLS != nil && resp.TLS.DidResume, wantResumed)
		}
	}
	system, err := TrustingTransport("")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := (&http.Client{Transport: system}).Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("the system's roots: got the test server trusted; want it refused")
	}
	if _, err := TrustingTransport(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Error("a missing CA file: got no error; want one")
	}
}
