package testkit

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/internal/mesh"
	"shoplab/internal/topology"
)

// TestIdentity is the mesh identity tests call services with. The intentions a stack writes allow it to call
// every service, as an operator's tool would be allowed; it is never a real service.
const TestIdentity = "shoplab-test"

var (
	meshMu      sync.Mutex
	meshClients = map[string]*http.Client{} // by Consul address and identity ("addr identity")
	addrConsul  = map[string]string{}       // a mesh service's address → its Consul agent's address
)

// rememberMesh records that addr serves mutual TLS for services of the agent at consulAddr, so Call reaches
// it with a certificate from that agent's CA.
func rememberMesh(addr, consulAddr string) {
	meshMu.Lock()
	addrConsul[addr] = consulAddr
	meshMu.Unlock()
}

// forgetMesh drops what rememberMesh and MeshClient recorded for a service's address and for a Consul agent's
// (either may be ""), once they are gone: a later test's server on the same port is not a mesh service of a
// stopped agent, and a later agent on the same port has a CA of its own.
func forgetMesh(addr, consulAddr string) {
	meshMu.Lock()
	defer meshMu.Unlock()
	if addr != "" {
		delete(addrConsul, addr)
	}
	if consulAddr != "" {
		for k := range meshClients {
			if strings.HasPrefix(k, consulAddr+" ") {
				delete(meshClients, k)
			}
		}
		for a, c := range addrConsul {
			if c == consulAddr {
				delete(addrConsul, a)
			}
		}
	}
}

// MeshClient is an HTTP client that calls the mesh services of the agent at consulAddr as TestIdentity: its
// leaf from that agent's CA, the server's chain checked against that CA's roots.
func MeshClient(t testing.TB, consulAddr string) *http.Client {
	t.Helper()
	return meshClientAs(t, consulAddr, TestIdentity)
}

// meshClientAs is MeshClient with the leaf of the mesh service named identity (say "orders", to call an
// internal route that only orders may call, or "front", to be refused one).
func meshClientAs(t testing.TB, consulAddr, identity string) *http.Client {
	t.Helper()
	meshMu.Lock()
	defer meshMu.Unlock()
	key := consulAddr + " " + identity
	if c, ok := meshClients[key]; ok {
		return c
	}
	client, err := consulx.NewClient(consulx.ClientConfig{Address: consulAddr})
	if err != nil {
		t.Fatal(err)
	}
	id := mesh.Start(context.Background(), client, identity, hclog.NewNullLogger())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := id.Wait(ctx); err != nil {
		t.Fatalf("identity %s in the mesh of %s: %v", identity, consulAddr, err)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: id.ClientTLS(""), MaxIdleConnsPerHost: 64}}
	meshClients[key] = c
	return c
}

// MeshTLS is the TLS configuration MeshClient dials with: TestIdentity's current leaf, any service's
// certificate of that agent's CA accepted.
func MeshTLS(t testing.TB, consulAddr string) *tls.Config {
	t.Helper()
	return MeshClient(t, consulAddr).Transport.(*http.Transport).TLSClientConfig
}

// HTTPClient is the client that reaches rawURL as Call does: over mutual TLS as TestIdentity for a mesh
// service testkit started, plainly otherwise.
func HTTPClient(t testing.TB, rawURL string) *http.Client {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return clientFor(t, u.Host)
}

// HTTPClientAs is HTTPClient calling a mesh service as the mesh service named identity.
func HTTPClientAs(t testing.TB, identity, rawURL string) *http.Client {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return clientAs(t, u.Host, identity)
}

// clientFor is the client that reaches the host:port of url: a mesh client for a mesh service, else plain.
func clientFor(t testing.TB, host string) *http.Client { return clientAs(t, host, TestIdentity) }

// clientAs is clientFor with a mesh service's identity.
func clientAs(t testing.TB, host, identity string) *http.Client {
	meshMu.Lock()
	consulAddr, ok := addrConsul[host]
	meshMu.Unlock()
	if !ok {
		return client
	}
	return meshClientAs(t, consulAddr, identity)
}

// servesTLS reports whether addr answers a TLS handshake with a certificate (a mesh service's API port).
func servesTLS(addr string) bool {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a probe, no data is sent
	if err != nil {
		return false
	}
	defer conn.Close()
	return len(conn.ConnectionState().PeerCertificates) > 0
}

// ApplyIntentions writes, into the stack's agent, the intentions of the topology file — default deny, and the
// calls it declares — plus an allow for TestIdentity to every service.
func (s *Stack) ApplyIntentions(t testing.TB) {
	t.Helper()
	if err := consulx.ApplyIntentions(context.Background(), s.Consul.Client, topology.Default().Calls(), TestIdentity); err != nil {
		t.Fatalf("intentions: %v", err)
	}
}

// WantInternalCallers checks a service's internal routes against provisioning/topology.yml, the one source of
// who calls whom: each route refuses every caller of service that is not among its internal callers there
// (the front, say) with 403 forbidden, and lets each internal caller through (any answer but 403). routes are
// "METHOD path" pairs under base (the service's URL); a POST is sent with the body {}.
func WantInternalCallers(t *testing.T, service, base string, routes ...string) {
	t.Helper()
	topo := topology.Default()
	internal := topo.InternalCallers(service)
	var outsiders []string
	for _, c := range topo.Callers(service) {
		if !slices.Contains(internal, c) {
			outsiders = append(outsiders, c)
		}
	}
	if len(internal) == 0 || len(outsiders) == 0 {
		t.Fatalf("%s: internal callers %v, other callers %v in provisioning/topology.yml; want some of each to try", service, internal, outsiders)
	}
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		body := ""
		if method == http.MethodPost {
			body = "{}"
		}
		for _, c := range outsiders {
			WantError(t, CallAs(t, c, method, base+path, body), http.StatusForbidden, "forbidden")
		}
		for _, c := range internal {
			if r := CallAs(t, c, method, base+path, body); r.Status == http.StatusForbidden {
				t.Errorf("%s as %s: got 403 %s; want it let through (an internal caller of %s)", route, c, r.Body, service)
			}
		}
	}
}
