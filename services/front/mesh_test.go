package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/topology"
	"shoplab/lab/testkit"
)

// setIntention sets source's action in dst's service-intentions entry.
func setIntention(t *testing.T, c *api.Client, dst, source string, action api.IntentionAction) {
	t.Helper()
	e, _, err := c.ConfigEntries().Get(api.ServiceIntentions, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	entry := e.(*api.ServiceIntentionsConfigEntry)
	for _, s := range entry.Sources {
		if s.Name == source {
			s.Action = action
		}
	}
	if _, _, err := c.ConfigEntries().Set(entry, nil); err != nil {
		t.Fatal(err)
	}
}

// TestIntentionChangeIsFollowedWithinASecond: denying front → catalog makes the front answer 503 with the error
// body for catalog within a second (its open connections included), and allowing it again restores it within
// a second.
func TestIntentionChangeIsFollowedWithinASecond(t *testing.T) {
	st := testkit.StartStack(t, "catalog")
	front := startFront(t, st, nil)
	url := front.URL + "/api/catalog/v1/categories"
	for range 20 { // open connections, allowed
		if r := testkit.Call(t, "GET", url, ""); r.Status != 200 {
			t.Fatalf("before: got %d %s", r.Status, r.Body)
		}
	}
	until := func(want int, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			r := testkit.Call(t, "GET", url, "")
			if r.Status == want {
				if want == 503 {
					msg := testkit.WantError(t, r, 503, "service_unavailable")
					if !strings.Contains(msg, "catalog") {
						t.Fatalf("503 message %q: want it to name catalog", msg)
					}
				}
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("got %d %s %s after the change; want %d within %s", r.Status, r.Body, time.Since(start), want, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	setIntention(t, st.Consul.Client, "catalog", "front", api.IntentionActionDeny)
	denied := until(503, time.Second)
	setIntention(t, st.Consul.Client, "catalog", "front", api.IntentionActionAllow)
	allowed := until(200, time.Second)
	t.Logf("deny followed after %s, allow after %s", denied.Round(time.Millisecond), allowed.Round(time.Millisecond))
}

// presentedAKID dials addr as the test identity and returns the authority key id of the leaf it presents.
func presentedAKID(t *testing.T, st *testkit.Stack, addr string) (string, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, testkit.MeshTLS(t, st.Consul.HTTPAddr))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", conn.ConnectionState().PeerCertificates[0].AuthorityKeyId), nil
}

func newCAKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// TestCARotationUnderTraffic: the CA root is rotated (a new private key) while traffic flows through the front to
// catalog and cart (cart also calls auth and catalog): no request fails, and every service goes over to a leaf
// of the new root, without a restart, in a time measured here.
func TestCARotationUnderTraffic(t *testing.T) {
	backends := append(topology.Default().Needs("cart"), "cart")
	st := testkit.StartStack(t, backends...)
	front := startFront(t, st, nil)
	u := testkit.NewUser(t, st.URL("auth"))
	services := map[string]string{}
	before := map[string]string{}
	for _, name := range backends {
		services[name] = st.Services[name][0].Addr
		akid, err := presentedAKID(t, st, services[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		before[name] = akid
	}
	l := startLoop(front.URL+"/api/catalog/v1/products?limit=2", 2, 200000)
	cartLoop := startLoopWith(front.URL+"/api/cart/v1/cart", 2, 200000, "Authorization", "Bearer "+u.Token)
	time.Sleep(500 * time.Millisecond)

	cfg, _, err := st.Consul.Client.Connect().CAGetConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Config["PrivateKey"] = newCAKey(t)
	delete(cfg.Config, "RootCert")
	rotated := time.Now()
	if _, err := st.Consul.Client.Connect().CASetConfig(cfg, nil); err != nil {
		t.Fatalf("rotate the CA: %v", err)
	}
	moved := map[string]time.Duration{}
	for len(moved) < len(services) {
		if time.Since(rotated) > 90*time.Second {
			t.Fatalf("services on a new leaf 90s after the rotation: %v of %v", moved, services)
		}
		for name, addr := range services {
			if _, done := moved[name]; done {
				continue
			}
			if akid, err := presentedAKID(t, st, addr); err == nil && akid != before[name] {
				moved[name] = time.Since(rotated)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // and traffic goes on with the new leaves
	l.finish()
	cartLoop.finish()
	if l.failed.Load() != 0 || cartLoop.failed.Load() != 0 || l.ok.Load() < 100 || cartLoop.ok.Load() < 100 {
		t.Fatalf("during the rotation: catalog %d ok %d failed %v; cart %d ok %d failed %v; want no failure",
			l.ok.Load(), l.failed.Load(), l.failures, cartLoop.ok.Load(), cartLoop.failed.Load(), cartLoop.failures)
	}
	var last time.Duration
	for _, d := range moved {
		last = max(last, d)
	}
	t.Logf("CA rotated under %d requests through the front, 0 failed; on a new leaf after %v (all within %s)",
		l.ok.Load()+cartLoop.ok.Load(), moved, last.Round(time.Millisecond))
}
