package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/mesh"
	"shoplab/lab/testkit"
)

// callAs calls url with the TLS configuration c and returns the status, or the error.
func callAs(c *tls.Config, url string) (int, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func identity(t *testing.T, st *testkit.Consul, service string) *mesh.Identity {
	t.Helper()
	id := mesh.Start(t.Context(), st.Client, service, hclog.NewNullLogger())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := id.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestOnlyAllowedCallersReachPayments: payments' API port takes mutual TLS from mesh services its intentions
// allow (orders) and nobody else: no certificate, a certificate of another CA, or the valid certificate of a
// service without an intention (cart) all fail the TLS handshake, and the refusal is logged with both
// identities; plain HTTP gets nothing of the API. Its health and metrics stay plain on the operations port.
func TestOnlyAllowedCallersReachPayments(t *testing.T) {
	st := testkit.StartStack(t, "payments")
	pay := st.Services["payments"][0]
	url := "https://" + pay.Addr + "/v1/payments?order_id=ord_nope"

	orders := identity(t, st.Consul, "orders")
	if status, err := callAs(orders.ClientTLS("payments"), url); err != nil || status != 404 {
		t.Fatalf("orders → payments: got %d, %v; want 404 from payments itself", status, err)
	}
	if status, err := callAs(orders.ClientTLS("catalog"), url); err == nil {
		t.Fatalf("orders dialling catalog but reaching payments: got %d; want the server's identity refused", status)
	}

	refused := []struct {
		name string
		tls  *tls.Config
	}{
		{"no certificate", &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the test is the server's refusal
		{"another CA", identity(t, testkit.NewConsul(t), "orders").ClientTLS("")},
		{"no intention (cart)", identity(t, st.Consul, "cart").ClientTLS("payments")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.tls
			if tc.name == "another CA" { // its own roots do not trust payments either; the server must refuse first
				cfg = cfg.Clone()
				cfg.VerifyConnection = nil
				cfg.InsecureSkipVerify = true //nolint:gosec // as above
			}
			status, err := callAs(cfg, url)
			if err == nil {
				t.Fatalf("got %d; want the TLS handshake refused", status)
			}
			if !mesh.IsRefused(err) {
				t.Fatalf("got %v; want the server to refuse the handshake", err)
			}
			t.Logf("refused: %v", err)
		})
	}
	plain, err := http.Get("http://" + pay.Addr + "/v1/payments?order_id=x")
	if err == nil {
		b, _ := io.ReadAll(plain.Body)
		plain.Body.Close()
		if plain.StatusCode != 400 || strings.Contains(string(b), "payment") {
			t.Fatalf("plain HTTP to the API port: got %d %s; want the TLS server's 400 and nothing of the API", plain.StatusCode, b)
		}
	}
	for _, p := range []string{"/health/ready", "/metrics"} {
		if r := testkit.Call(t, "GET", pay.OpsURL+p, ""); r.Status != 200 {
			t.Fatalf("%s on the operations port: got %d", p, r.Status)
		}
	}
	if err := pay.Stop(); err != nil {
		t.Fatal(err)
	}
	logs := pay.Logs()
	if !strings.Contains(logs, "call refused by intention") || !strings.Contains(logs, "source=cart") || !strings.Contains(logs, "target=payments") {
		t.Fatalf("payments' log: want the refused call with source=cart and target=payments; got\n%s", logs)
	}
}
