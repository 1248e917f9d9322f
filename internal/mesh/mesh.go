// Package mesh makes shoplab's services Connect-native members of Consul's service mesh: each one serves its
// API over mutual TLS with the leaf certificate Consul's CA issues for it, dials other services with that
// leaf, checks every peer's chain against the CA roots and its SPIFFE id against the service it meant, and
// lets a caller in only while Consul's intentions allow it.
//
// Everything comes from the local agent's HTTP API (github.com/hashicorp/consul/api): CA roots and the leaf
// are followed with blocking queries, so a CA rotation or a leaf renewal takes effect without a restart and
// without dropping a request; authorisation asks the agent (/v1/agent/connect/authorize), whose intention
// cache follows the servers. The consul/connect package does the same, but it lives in Consul's main module,
// whose go.mod would pull the whole of Consul into the services' module graph for a few hundred lines.
package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
)

// Identity is one service's identity in the mesh, kept current while its context lives.
type Identity struct {
	service string
	log     hclog.Logger

	rootsF, leafF *consulx.Follower
	roots         atomic.Pointer[rootSet]
	leaf          atomic.Pointer[tls.Certificate]
	leafX509      atomic.Pointer[x509.Certificate]
}

type rootSet struct {
	pool        *x509.CertPool
	trustDomain string
	activeID    string
}

// Start follows the CA roots and service's leaf certificate on the local agent until ctx ends.
func Start(ctx context.Context, consul *api.Client, service string, log hclog.Logger) *Identity {
	id := &Identity{service: service, log: log.Named("mesh")}
	o := consulx.WatchOptions{WaitTime: 5 * time.Minute}
	id.rootsF = consulx.Follow(ctx, o, id.log.With("watch", "ca-roots"), func(ctx context.Context, q *api.QueryOptions) (uint64, error) {
		list, meta, err := consul.Agent().ConnectCARoots(q)
		if err != nil {
			return 0, err
		}
		rs := &rootSet{pool: x509.NewCertPool(), trustDomain: list.TrustDomain, activeID: list.ActiveRootID}
		for _, r := range list.Roots {
			rs.pool.AppendCertsFromPEM([]byte(r.RootCertPEM))
		}
		if old := id.roots.Swap(rs); old != nil && old.activeID != rs.activeID {
			id.log.Info("CA roots changed", "active_root", rs.activeID, "roots", len(list.Roots))
		}
		return meta.LastIndex, nil
	})
	id.leafF = consulx.Follow(ctx, o, id.log.With("watch", "leaf"), func(ctx context.Context, q *api.QueryOptions) (uint64, error) {
		leaf, meta, err := consul.Agent().ConnectCALeaf(service, q)
		if err != nil {
			return 0, err
		}
		cert, err := tls.X509KeyPair([]byte(leaf.CertPEM), []byte(leaf.PrivateKeyPEM))
		if err != nil {
			return 0, fmt.Errorf("leaf certificate of %s: %w", service, err)
		}
		x, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return 0, fmt.Errorf("leaf certificate of %s: %w", service, err)
		}
		id.leaf.Store(&cert)
		if old := id.leafX509.Swap(x); old == nil || old.SerialNumber.Cmp(x.SerialNumber) != 0 {
			id.log.Info("leaf certificate", "serial", serial(x), "valid_until", x.NotAfter.UTC().Format(time.RFC3339))
		}
		return meta.LastIndex, nil
	})
	return id
}

// Service is the identity's service name.
func (id *Identity) Service() string { return id.service }

// Ready reports whether the identity can be used: it has its leaf and the roots.
func (id *Identity) Ready(context.Context) error {
	if id.leaf.Load() == nil || id.roots.Load() == nil {
		h := id.leafF.Health()
		if h.LastError == "" {
			h = id.rootsF.Health()
		}
		return fmt.Errorf("no mesh certificate from the Consul agent yet: %s", strings.TrimSpace(h.LastError))
	}
	return nil
}

// Wait waits until the identity is ready or ctx ends.
func (id *Identity) Wait(ctx context.Context) error {
	for id.Ready(ctx) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", id.Ready(ctx), context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Leaf is the certificate the identity presents now (nil before the first).
func (id *Identity) Leaf() *x509.Certificate { return id.leafX509.Load() }

var errNoCertificate = errors.New("no mesh certificate yet")

// certificate is the leaf to present, once the roots are known too: the leaf arrives from its own watch and
// may come first, and a handshake whose peer cannot be verified yet would only fail.
func (id *Identity) certificate() (*tls.Certificate, error) {
	if c := id.leaf.Load(); c != nil && id.roots.Load() != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// verifyPeer checks that chain leads from a leaf to one of the current roots and names a service of this
// trust domain, and returns that service.
func (id *Identity) verifyPeer(chain []*x509.Certificate) (string, error) {
	rs := id.roots.Load()
	if rs == nil {
		return "", errors.New("no CA roots yet")
	}
	if len(chain) == 0 {
		return "", errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: rs.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("certificate not issued by the mesh CA: %w", err)
	}
	uri := spiffeURI(chain[0])
	svc, ok := ServiceOf(uri, rs.trustDomain)
	if !ok {
		return "", fmt.Errorf("certificate %q is not a service identity of trust domain %s", uri, rs.trustDomain)
	}
	return svc, nil
}

// spiffeURI is a certificate's spiffe:// URI SAN, or "".
func spiffeURI(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

// ServiceOf returns the service a Consul SPIFFE id names (spiffe://<trust domain>/ns/<ns>/dc/<dc>/svc/<name>,
// optionally with an admin partition first), if it belongs to trustDomain.
func ServiceOf(uri, trustDomain string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "spiffe" || !strings.EqualFold(u.Host, trustDomain) {
		return "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	for i := 0; i+1 < len(parts); i += 2 {
		if parts[i] == "svc" && parts[i+1] != "" && i+2 == len(parts) {
			return parts[i+1], true
		}
	}
	return "", false
}

func serial(c *x509.Certificate) string {
	b := c.SerialNumber.Bytes()
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, ":")
}

// ServerTLS is the TLS configuration of a service's API listener: TLS 1.3, its current leaf, a client
// certificate required, verified against the current roots, and its service allowed by authz. Refusals are
// logged with both identities.
func (id *Identity) ServerTLS(authz *Authorizer) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.certificate() },
		// The chain is verified in VerifyConnection against the roots of the moment (they rotate).
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			src, err := id.verifyPeer(cs.PeerCertificates)
			if err != nil {
				id.log.Warn("connection refused: certificate not from the mesh", "target", id.service, "error", err)
				return err
			}
			if ok, reason := authz.allow(cs.PeerCertificates[0], src); !ok {
				return fmt.Errorf("%s may not call %s: %s", src, id.service, reason)
			}
			return nil
		},
	}
}

// ClientTLS is the TLS configuration for calling target: this identity's leaf as the client certificate, and
// the server's chain checked against the current roots and its SPIFFE id against target ("" accepts any
// service of the mesh).
func (id *Identity) ClientTLS(target string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.certificate() },
		// Go's own check would need a fixed root pool and a DNS name; the mesh has rotating roots and SPIFFE
		// ids, so VerifyConnection does the whole check instead.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			svc, err := id.verifyPeer(cs.PeerCertificates)
			if err != nil {
				return err
			}
			if target != "" && svc != target {
				return fmt.Errorf("dialled %s but the peer is %s", target, svc)
			}
			return nil
		},
	}
}

// IsRefused reports whether err is a peer refusing this side's certificate during the TLS handshake: an
// intention denies the call, or the certificate is not (yet) trusted there.
func IsRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
