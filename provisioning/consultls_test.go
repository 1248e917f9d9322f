package provisioning

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/lab/consulagent"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

// labTLS makes the lab's Consul TLS material in a fresh lab directory as `vagrant up` does (lab.rb) and returns
// its tls directory.
func labTLS(t *testing.T, env ...string) string {
	t.Helper()
	need(t, "ruby", "install it with: sudo apt-get install -y vagrant (it brings Ruby)")
	lab := t.TempDir()
	env = append([]string{"SHOPLAB_LAB_DIR=" + lab}, env...)
	if out, err := run(t, root(t), env, "ruby", "provisioning/lab.rb", "tls"); err != nil {
		t.Fatalf("ruby provisioning/lab.rb tls: %v\n%s", err, out)
	}
	return filepath.Join(lab, "vm", "tls")
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestLabCA: the lab's CA signs one certificate per Consul server for what Consul and the host check
// (server.shoplab.consul, localhost, 127.0.0.1, its address), usable at both ends of RPC, and one per VM that
// keeps a database for the names its clients verify (sslmode=verify-full: the member's address, and a Patroni
// member's cluster names in Consul DNS); the private keys are 0600; running again keeps everything; a lost
// server certificate is made again under the same CA.
func TestLabCA(t *testing.T) {
	dir := labTLS(t, "CONSUL_SERVERS=3", "REPLICAS=catalog=2")
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	if !ca.IsCA {
		t.Fatalf("ca.pem: got IsCA false; want a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for i, ip := range []string{"192.168.56.10", "192.168.56.11", "192.168.56.12"} {
		name := fmt.Sprintf("consul-%d", i+1)
		c := readCert(t, filepath.Join(dir, name+".pem"))
		for _, host := range []string{"server.shoplab.consul", "localhost", "127.0.0.1", ip} {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("%s for %s (usage %v): got %v; want valid", name, host, usage, err)
				}
			}
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "server.other.consul"}); err == nil {
			t.Errorf("%s for server.other.consul: got valid; want refused", name)
		}
		for _, key := range []string{name + "-key.pem", "ca-key.pem"} {
			st, err := os.Stat(filepath.Join(dir, key))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: got %v %v; want mode 0600", key, st.Mode(), err)
			}
		}
	}
	for _, c := range []struct {
		vm   string
		want []string
		not  []string
	}{
		{"catalog-1", []string{"192.168.56.110", "catalog-1", "primary.catalog-db.service.consul", "catalog-db.service.consul"},
			[]string{"192.168.56.111", "primary.orders-db.service.consul"}},
		{"catalog-2", []string{"192.168.56.111", "primary.catalog-db.service.consul"}, []string{"192.168.56.110"}},
		{"payments-1", []string{"192.168.56.120", "payments-1"}, []string{"primary.payments-db.service.consul", "192.168.56.110"}},
	} {
		cert := readCert(t, filepath.Join(dir, c.vm+"-db.pem"))
		for _, host := range c.want {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("%s's database certificate for %s (usage %v): got %v; want valid", c.vm, host, usage, err)
				}
			}
		}
		for _, host := range c.not {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err == nil {
				t.Errorf("%s's database certificate for %s: got valid; want refused", c.vm, host)
			}
		}
		if st, err := os.Stat(filepath.Join(dir, c.vm+"-db-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s-db-key.pem: got %v %v; want mode 0600", c.vm, st.Mode(), err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "front-1-db.pem")); err == nil {
		t.Error("front-1-db.pem: got a database certificate for a VM without a database")
	}
	before := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	for _, f := range files {
		before[f], _ = os.ReadFile(f)
	}
	lab := filepath.Dir(filepath.Dir(dir))
	if err := os.Remove(filepath.Join(dir, "consul-2.pem")); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, root(t), []string{"SHOPLAB_LAB_DIR=" + lab, "CONSUL_SERVERS=3", "REPLICAS=catalog=2"}, "ruby", "provisioning/lab.rb", "tls"); err != nil {
		t.Fatalf("ruby provisioning/lab.rb tls again: %v\n%s", err, out)
	}
	for _, f := range files {
		after, _ := os.ReadFile(f)
		changed := !bytes.Equal(before[f], after)
		if want := strings.HasSuffix(f, "consul-2.pem") || strings.HasSuffix(f, "consul-2-key.pem"); changed != want {
			t.Errorf("%s changed on a second run: got %v; want %v", filepath.Base(f), changed, want)
		}
	}
	if _, err := readCert(t, filepath.Join(dir, "consul-2.pem")).Verify(x509.VerifyOptions{Roots: roots, DNSName: "server.shoplab.consul"}); err != nil {
		t.Fatalf("consul-2 made again: got %v; want signed by the same CA", err)
	}
}

// consulProc is a Consul agent this test started.
type consulProc struct {
	p   *proc.Process
	log string
}

func (c consulProc) logs() string { b, _ := os.ReadFile(c.log); return string(b) }

// startConsul renders the configuration provisioning writes for role, adds loopback ports and a data
// directory of its own (a later file wins), and starts a real agent with it.
func startConsul(t *testing.T, consul, role, node, tlsDir string, env []string, override string) consulProc {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "consul.hcl")
	if role != "" {
		env = append([]string{"SHOPLAB_ROLE=" + role, "SHOPLAB_NODE=" + node, "SHOPLAB_IP=127.0.0.1", "SHOPLAB_SERVERS=127.0.0.1",
			"CONSUL_TLS_DIR=" + tlsDir}, env...)
		if out, err := shellFunc(t, env, "render_consul_config "+cfg); err != nil {
			t.Fatalf("render %s: %v\n%s", role, err, out)
		}
	} else if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "zz-test.hcl")
	if err := os.WriteFile(extra, []byte(fmt.Sprintf("data_dir = %q\nlog_level = \"debug\"\n%s", filepath.Join(dir, "data"), override)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := consulProc{log: filepath.Join(dir, "consul.log")}
	p, err := proc.Start(proc.Spec{Name: "consul-" + node, Path: consul, Args: []string{"agent", "-config-file", cfg, "-config-file", extra},
		LogPath: c.log, ParentDeath: syscall.SIGTERM})
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	t.Cleanup(func() { _ = p.Stop(syscall.SIGTERM, 10*time.Second) })
	return c
}

// TestConsulTLS: the configurations provisioning renders, with the lab's CA and certificates, in real Consul
// agents on loopback. The server answers HTTPS only to clients that trust the lab's CA and plain HTTP on
// loopback; a client agent with the CA alone gets its RPC certificate from the server (auto_encrypt) and reads
// the catalogue through it; an agent with the gossip key and a valid token but without the CA joins the gossip
// and yet every RPC it makes is refused by the server.
func TestConsulTLS(t *testing.T) {
	start := time.Now()
	step := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
	consul, err := consulagent.Binary()
	testkit.Need(t, "consul", err, consulagent.InstallHint)
	labDir := labTLS(t)
	// The files as install_consul_tls lays them out on a server.
	tlsDir := t.TempDir()
	for from, to := range map[string]string{"ca.pem": "ca.pem", "consul-1.pem": "server.pem", "consul-1-key.pem": "server-key.pem"} {
		b, err := os.ReadFile(filepath.Join(labDir, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tlsDir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const mgmt, clientToken = "6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e01", "6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e02"
	gossip := "WbnNRdydHzw0IFv1xWJDZrQf7ZJ4K5RlcuTmEeJZ1zc="
	base := []string{"CONSUL_GOSSIP_KEY=" + gossip, "CONSUL_AGENT_TOKEN=" + clientToken,
		"CONSUL_DNS_TOKEN=6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e03", "CONSUL_MANAGEMENT_TOKEN=" + mgmt}
	ports, err := proc.FreePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	srvRPC, srvSerf, srvHTTP, srvHTTPS := ports[0], ports[1], ports[2], ports[3]
	join := fmt.Sprintf("retry_join = [\"127.0.0.1:%d\"]\n", srvSerf)
	server := startConsul(t, consul, "consul-server", "consul-1", tlsDir, base, fmt.Sprintf(
		"ports {\n server = %d\n serf_lan = %d\n serf_wan = -1\n http = %d\n https = %d\n dns = -1\n grpc = -1\n grpc_tls = -1\n}\n",
		srvRPC, srvSerf, srvHTTP, srvHTTPS))

	// HTTPS with the lab's CA: the leader appears, and the management token can create the client's token.
	httpsURL := fmt.Sprintf("https://127.0.0.1:%d", srvHTTPS)
	cfg := api.DefaultConfig()
	cfg.Address = httpsURL // api.NewClient keeps the scheme apart
	cfg.Token = mgmt
	cfg.TLSConfig = api.TLSConfig{CAFile: filepath.Join(labDir, "ca.pem")}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.WaitFor(server.p, 60*time.Second, 250*time.Millisecond, func() error {
		leader, err := c.Status().Leader()
		if err == nil && leader == "" {
			err = errors.New("no leader yet")
		}
		return err
	}); err != nil {
		t.Fatalf("leader over HTTPS with the lab CA: %v\n%s", err, proc.TailFile(server.log, 30))
	}
	step("server elected itself; HTTPS with the lab CA answers")
	// Without the lab's CA the server is not trusted.
	_, err = (&http.Client{Timeout: 5 * time.Second}).Get(httpsURL + "/v1/status/leader")
	if errUnknownAuthority := (x509.UnknownAuthorityError{}); !errors.As(err, &errUnknownAuthority) {
		t.Fatalf("HTTPS without the lab CA: got %v; want an unknown authority error", err)
	}
	// Plain HTTP answers on loopback (local tools).
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status/leader", srvHTTP))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plain HTTP on loopback: got %v %v; want 200", resp, err)
	}
	resp.Body.Close()
	// The host's tools (make lab-verify, make vm-test) read it the same way: CONSUL_CACERT and an https address.
	shoplab := testkit.Binary(t, "cmd/shoplab")
	out, err := run(t, root(t), []string{"CONSUL_CACERT=" + filepath.Join(labDir, "ca.pem"), "CONSUL_HTTP_TOKEN=" + mgmt},
		shoplab, "status", "--consul", httpsURL, "--members")
	if err != nil || !strings.Contains(out, "consul-1") {
		t.Fatalf("shoplab status over HTTPS with CONSUL_CACERT: %v\n%s", err, out)
	}
	if out, err := run(t, root(t), []string{"CONSUL_CACERT=", "CONSUL_HTTP_TOKEN=" + mgmt}, shoplab, "status", "--consul", httpsURL); err == nil {
		t.Fatalf("shoplab status over HTTPS without the lab CA: got success; want an error\n%s", out)
	}
	// The server's RPC port speaks TLS with its certificate (server.shoplab.consul) and demands a client certificate.
	rpcTLS(t, srvRPC, labDir)

	// The tokens and intentions as the first server's provisioning makes them (consul_acl_setup, over the HTTP API),
	// twice: a second run changes nothing and fails at nothing.
	const intruderToken = "6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e04"
	spec := "agent client-1 6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e11 " + clientToken + "\n" +
		"agent intruder 6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e12 " + intruderToken + "\n" +
		"service cart 6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e13 6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e14"
	intentions := `{"Kind":"service-intentions","Name":"catalog","Sources":[{"Name":"cart","Action":"allow"}]}`
	for run := 1; run <= 2; run++ {
		out, err := shellFunc(t, append(base, fmt.Sprintf("CONSUL_HTTP_ADDR=127.0.0.1:%d", srvHTTP), "SHOPLAB_ACL_SPEC="+spec,
			"SHOPLAB_INTENTIONS="+intentions), "consul_acl_setup")
		if err != nil {
			t.Fatalf("consul_acl_setup, run %d: %v\n%s", run, err, out)
		}
		if created := strings.Count(out, "created the ACL token"); created != map[int]int{1: 3, 2: 0}[run] {
			t.Fatalf("consul_acl_setup, run %d: got %d tokens created; want %d\n%s", run, created, map[int]int{1: 3, 2: 0}[run], out)
		}
	}
	for name, kind := range map[string]string{"client-1": "agent", "cart": "service"} {
		p, _, err := c.ACL().PolicyReadByName("shoplab-"+kind+"-"+name, nil)
		want, _ := shellFunc(t, nil, "acl_rules "+kind+" "+name)
		if err != nil || p == nil || p.Rules != strings.TrimSpace(want) {
			t.Fatalf("policy shoplab-%s-%s: got %v, %q; want the rules acl_rules prints: %q", kind, name, err, p.Rules, want)
		}
	}
	// A service's token reads its own database cluster's Patroni keys (its read gate, DATABASE_READ_CLUSTER),
	// and no other cluster's.
	for _, key := range []string{"shoplab/cart-db/leader", "shoplab/catalog-db/leader"} {
		if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte("a-member")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	asCart, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", srvHTTP), Token: "6f1e1f3c-3d43-4a55-9b0c-5f8f0c1d2e14"})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"shoplab/cart-db/leader": true, "shoplab/catalog-db/leader": false} {
		pair, _, err := asCart.KV().Get(key, nil)
		if got := err == nil && pair != nil; got != want {
			t.Fatalf("cart's token reads %s: got %v (%v); want %v", key, got, err, want)
		}
	}
	if e, _, err := c.ConfigEntries().Get(api.ServiceIntentions, "catalog", nil); err != nil || len(e.(*api.ServiceIntentionsConfigEntry).Sources) != 1 {
		t.Fatalf("intentions of catalog: got %+v, %v; want cart allowed", e, err)
	}
	step("consul_acl_setup made the tokens, policies and intentions, and a second run changed nothing")

	// A client agent as provisioning renders it: the CA only; its RPC certificate comes from the server.
	clientHTTP := ports[4]
	client := startConsul(t, consul, "service", "client-1", tlsDir, base, join+fmt.Sprintf(
		// auto_encrypt asks the join addresses at the agent's own idea of the server port.
		"ports {\n server = %d\n serf_lan = %d\n http = %d\n dns = -1\n grpc = -1\n grpc_tls = -1\n}\n", srvRPC, ports[5], clientHTTP))
	// nodes reads the catalogue through an agent (its RPC to the server) with token, whose policy lets it see its
	// own node.
	nodes := func(httpPort int, token, node string) error {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/v1/catalog/nodes", httpPort), nil)
		req.Header.Set("X-Consul-Token", token)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), `"Node":"`+node+`"`) {
			return fmt.Errorf("catalog nodes: %d %s", resp.StatusCode, strings.TrimSpace(b.String()))
		}
		return nil
	}
	if err := proc.WaitFor(client.p, 60*time.Second, 250*time.Millisecond, func() error { return nodes(clientHTTP, clientToken, "client-1") }); err != nil {
		t.Fatalf("client agent with auto_encrypt: %v\nclient log:\n%s\nserver log:\n%s", err, proc.TailFile(client.log, 30), proc.TailFile(server.log, 30))
	}
	step("client agent got its certificate (auto_encrypt) and read the catalogue")

	// An agent with the gossip key and a valid token but without the CA: gossip lets it in, RPC does not.
	intruderHTTP := ports[6]
	intruder := startConsul(t, consul, "", "intruder", "", nil, fmt.Sprintf(`datacenter = "shoplab"
node_name = "intruder"
bind_addr = "127.0.0.1"
client_addr = "127.0.0.1"
encrypt = %q
acl {
  enabled = true
  default_policy = "deny"
  tokens { agent = %q }
}
ports {
 serf_lan = %d
 http = %d
 dns = -1
 grpc = -1
 grpc_tls = -1
}
%s`, gossip, intruderToken, ports[7], intruderHTTP, join))
	if err := proc.WaitFor(intruder.p, 60*time.Second, 250*time.Millisecond, func() error {
		members, err := c.Agent().Members(false)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Name == "intruder" {
				return nil
			}
		}
		return errors.New("the intruder has not joined the gossip yet")
	}); err != nil {
		t.Fatalf("%v\nintruder log:\n%s", err, proc.TailFile(intruder.log, 30))
	}
	step("intruder joined the gossip")
	const refused = "Non-TLS connection attempted with VerifyIncoming set"
	deadline := time.Now().Add(20 * time.Second)
	for tries := 0; time.Now().Before(deadline); tries++ {
		if err := nodes(intruderHTTP, intruderToken, "intruder"); err == nil {
			t.Fatalf("an agent without the lab CA read the catalogue through the server's RPC (try %d)", tries)
		}
		if tries >= 1 && strings.Contains(server.logs(), refused) {
			t.Logf("intruder refused: %d tries failed; server log has %q", tries+1, refused)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("server log: want %q after the intruder's calls\n%s", refused, proc.TailFile(server.log, 30))
}

// rpcTLS dials the server's RPC port as Consul's TLS RPC does (one byte saying TLS, then a handshake): with a
// certificate the lab's CA signed it succeeds and the server proves server.shoplab.consul; with none it fails.
func rpcTLS(t *testing.T, port int, labDir string) {
	t.Helper()
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(labDir, "ca.pem"))
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(labDir, "consul-1.pem"), filepath.Join(labDir, "consul-1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	const rpcTLSByte = 0x03 // pool.RPCTLS in Consul
	handshake := func(certs []tls.Certificate) error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte{rpcTLSByte}); err != nil {
			return err
		}
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "server.shoplab.consul", Certificates: certs, MinVersion: tls.VersionTLS12})
		if err := tc.Handshake(); err != nil {
			return err
		}
		// TLS 1.3 reports a missing client certificate on the first read.
		_ = tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		var b [1]byte
		if _, err := tc.Read(b[:]); err != nil && !isTimeout(err) {
			return err
		}
		return nil
	}
	if err := handshake([]tls.Certificate{cert}); err != nil {
		t.Fatalf("RPC TLS with a lab certificate: got %v; want a handshake", err)
	}
	if err := handshake(nil); err == nil {
		t.Fatalf("RPC TLS without a client certificate: got a handshake; want refused")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
