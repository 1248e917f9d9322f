package netx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// TrustingTransport is an HTTP transport like http.DefaultTransport that verifies HTTPS servers against the
// certificates of caFile (PEM; empty: the system's roots): how the VM lab's services and patroni-tags reach
// Patroni's REST API, whose certificates the lab's own CA signs. That server closes every connection after its
// answer (HTTP/1.0), so each request is a new handshake: the transport keeps the server's session tickets and
// resumes, which spares both ends the certificate's signature and its verification on an emulated VM.
func TrustingTransport(caFile string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(16)}
	if caFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	t.TLSClientConfig.RootCAs = x509.NewCertPool()
	if !t.TLSClientConfig.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	return t, nil
}
