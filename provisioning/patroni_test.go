package provisioning

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	_ "github.com/lib/pq"

	"shoplab/internal/app"
	"shoplab/internal/netx"
	"shoplab/internal/pgdb"
	"shoplab/lab"
	"shoplab/lab/consulagent"
	"shoplab/lab/pgcluster"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

// patroniNode is one member of the test's cluster: its own loopback address, ports and directories.
type patroniNode struct {
	name, ip        string
	pgPort, apiPort int
	dir, config     string
	env             []string
	p               *proc.Process
}

// patroniEnv is what provisioning gives render_patroni_config on a VM, for a member on loopback.
func patroniEnv(n *patroniNode, consul, members string) []string {
	return []string{"SHOPLAB_NODE=" + n.name, "SHOPLAB_IP=" + n.ip, "SHOPLAB_SERVICE=catalog", "SHOPLAB_NETWORK=127.0.0.0/8",
		"PATRONI_SCOPE=catalog-db", "CONSUL_PATRONI_TOKEN=unused-in-a-dev-agent", "PATRONI_CONSUL=" + consul,
		"PATRONI_SUPERUSER_PASSWORD=su-pw", "PATRONI_REPLICATION_PASSWORD=repl-pw", "PATRONI_REWIND_PASSWORD=rewind-pw",
		"PATRONI_REST_PASSWORD=rest-pw", "PATRONI_MEMBERS=" + members, "LAB_TLS_DIR=" + filepath.Join(n.dir, "tls"),
		"PATRONI_PG_PORT=" + strconv.Itoa(n.pgPort), "PATRONI_API_PORT=" + strconv.Itoa(n.apiPort),
		"PATRONI_DATA_DIR=" + filepath.Join(n.dir, "data"), "PATRONI_SOCKET_DIR=" + n.dir,
		// The VMs' ttl (Consul's minimum session is 10 s: ttl/2), a quicker loop.
		"PATRONI_TTL=20", "PATRONI_LOOP_WAIT=2"}
}

// TestPatroniCluster runs the Patroni configuration provisioning renders, for real: two members with
// PostgreSQL 15 and a Consul agent as the DCS, on loopback, each with its certificate of a test CA as lab.rb
// makes them. It checks what the VM lab relies on: the rendered configuration passes `patroni
// --validate-config` (and a bad one does not); one member leads and the other streams as the synchronous
// standby, over TLS; only TLS connections verified against the lab's CA get in, and the REST API's unsafe
// endpoints take the password from members and loopback alone; the cluster is in Consul as catalog-db, tagged primary and replica, and
// `shoplab status --patroni` says so; the leader killed (SIGKILL, Patroni and PostgreSQL both) → the replica
// is promoted with every committed row, and the old leader, started again, rejoins as a replica. Before the
// crash, Consul is cut off for 25 s: the primary keeps taking writes. Last, the promoted member's tags are
// written back as Consul's anti-entropy can (hashicorp/consul#13578), and shoplab patroni-tags repairs them.
func TestPatroniCluster(t *testing.T) {
	patroni := need(t, "patroni", "install it with: sudo apt-get install -y --no-install-recommends patroni python3-consul")
	if _, err := pgcluster.BinDir(); err != nil {
		testkit.Need(t, "postgresql", err, pgcluster.InstallHint)
	}
	cred, err := pgcluster.Credential()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "shoplab-patroni-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // the postgres user walks into it
		t.Fatal(err)
	}
	ca := newTestCA(t)
	caFile := filepath.Join(base, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	// The agent checks Patroni's HTTPS REST API with the lab's CA, as the VM lab's agents do.
	consul := testkit.NewConsulWith(t, consulagent.Options{ChecksCAFile: caFile})
	// Patroni reaches Consul through a proxy the test can cut: Consul unreachable for a while.
	dcs := testkit.NewProxy(t, consul.HTTPAddr)
	ports, err := proc.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	// Every member's REST API on the same port, at its own address, as on the VMs (Prometheus finds them so).
	nodes := []*patroniNode{
		{name: "catalog-1", ip: "127.0.0.2", pgPort: ports[0], apiPort: ports[1]},
		{name: "catalog-2", ip: "127.0.0.3", pgPort: ports[2], apiPort: ports[1]},
	}
	for _, n := range nodes {
		n.dir = filepath.Join(base, n.name)
		n.config = filepath.Join(n.dir, "patroni.yml")
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		ca.writeTLSDir(t, filepath.Join(n.dir, "tls"), n.ip, n.name, "primary.catalog-db.service.consul", "catalog-db.service.consul")
		n.env = patroniEnv(n, dcs.Addr(), nodes[0].ip+","+nodes[1].ip)
		if out, err := shellFunc(t, n.env, "render_patroni_config "+n.config); err != nil {
			t.Fatalf("render %s: %v\n%s", n.name, err, out)
		}
		if out, err := run(t, root(t), nil, patroni, "--validate-config", n.config); err != nil {
			b, _ := os.ReadFile(n.config)
			t.Fatalf("patroni --validate-config %s: %v\n%s\n%s", n.name, err, out, b)
		}
		if fi, _ := os.Stat(n.config); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v; want 0600 (it holds passwords)", n.config, fi.Mode().Perm())
		}
		if err := pgcluster.ChownTree(n.dir, cred); err != nil {
			t.Fatal(err)
		}
	}
	// A member that would advertise 127.0.0.1 to the others is refused by Patroni's own validator.
	bad := filepath.Join(base, "bad.yml")
	badEnv := append(slices.Clone(nodes[0].env), "SHOPLAB_IP=127.0.0.1")
	if out, err := shellFunc(t, badEnv, "render_patroni_config "+bad); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	if out, err := run(t, root(t), nil, patroni, "--validate-config", bad); err == nil {
		t.Fatalf("patroni --validate-config with connect_address 127.0.0.1: got success\n%s", out)
	}

	start := func(n *patroniNode) {
		t.Helper()
		// HOME as the unit gives the postgres user its own: libpq (pg_basebackup, pg_rewind) looks for a client
		// certificate there, and the test's own home is not the postgres user's to read.
		env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }), "HOME="+n.dir)
		p, err := proc.Start(proc.Spec{Name: "patroni " + n.name, Path: patroni, Args: []string{n.config}, Dir: n.dir, Env: env,
			LogPath: filepath.Join(n.dir, "patroni.log"), Credential: cred, ParentDeath: syscall.SIGKILL})
		if err != nil {
			t.Fatal(err)
		}
		n.p = p
	}
	kill := func(n *patroniNode) {
		t.Helper()
		// Patroni leaves PostgreSQL running when it dies: kill both, as a crash of the VM would.
		pid := postmasterPID(t, n)
		_ = n.p.Stop(syscall.SIGKILL, 5*time.Second)
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, n := range nodes {
		start(n)
		t.Cleanup(func() {
			if n.p != nil {
				_ = n.p.Stop(syscall.SIGTERM, 20*time.Second)
			}
			if pid := postmasterPID(t, n); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
	}
	logs := func() string {
		var b strings.Builder
		for _, n := range nodes {
			fmt.Fprintf(&b, "--- %s\n%s\n", n.name, proc.TailFile(filepath.Join(n.dir, "patroni.log"), 30))
		}
		return b.String()
	}

	// 1. One leader, one synchronous standby, both in Consul.
	leader := waitCluster(t, consul.Client, 120*time.Second, "", logs)
	var primary, replica *patroniNode
	for _, n := range nodes {
		if n.name == leader {
			primary = n
		} else {
			replica = n
		}
	}
	t.Logf("leader %s", leader)
	out, err := run(t, root(t), []string{"CONSUL_HTTP_ADDR=" + consul.HTTPAddr}, testkit.Binary(t, "cmd/shoplab"),
		"status", "--topology", "provisioning/topology.yml", "--replicas", "catalog=2", "--patroni")
	for _, want := range []string{"catalog-db  " + primary.name, "leader", replica.name, "sync", "missing: catalog: 0 of 2 expected instances passing"} {
		if !strings.Contains(out, want) {
			t.Fatalf("shoplab status --patroni: want %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "missing: catalog-db") {
		t.Fatalf("shoplab status --patroni: a healthy cluster reported missing:\n%s", out)
	}
	// Prometheus' discovery (the VM lab's monitor) finds both members, tagged patroni, at their REST API, whose
	// /metrics says which one is the primary.
	if got, want := patroniPrimaries(t, consul.Client, primary.apiPort, caFile), map[string]string{primary.name: "1", replica.name: "0"}; !maps.Equal(got, want) {
		t.Fatalf("patroni_primary through the discovery: got %v; want %v", got, want)
	}

	// The cluster's timing, as a lab made before the timing changed is told it (patroni_apply_timing in
	// setup_patroni): a new retry_timeout reaches Patroni's dynamic configuration; asked again, nothing to do;
	// with a wrong password the call fails, and says so.
	timing := append(slices.Clone(primary.env), "PATRONI_RETRY_TIMEOUT=6")
	if out, err := shellFunc(t, timing, "patroni_apply_timing"); err != nil || !strings.Contains(out, "retry_timeout 6") {
		t.Fatalf("patroni_apply_timing: got %v\n%s; want retry_timeout 6 applied", err, out)
	}
	if got := patroniConfig(t, primary, caFile); !strings.Contains(got, `"retry_timeout": 6`) || !strings.Contains(got, `"ttl": 20`) {
		t.Fatalf("Patroni's dynamic configuration after patroni_apply_timing: got %s; want ttl 20 and retry_timeout 6", got)
	}
	if out, err := shellFunc(t, timing, "patroni_apply_timing"); err != nil || out != "" {
		t.Fatalf("patroni_apply_timing with the timing in place: got %v, %q; want nothing done", err, out)
	}
	if out, err := shellFunc(t, append(timing, "PATRONI_RETRY_TIMEOUT=5", "PATRONI_REST_PASSWORD=wrong"), "patroni_apply_timing"); err == nil || !strings.Contains(out, "failed") {
		t.Fatalf("patroni_apply_timing with a wrong password: got %v, %q; want a failure that says so", err, out)
	}

	// 2. The service's role and database, as setup_patroni makes them on the leader; rows committed there.
	// The superuser's password reaches psql in its environment, as provisioning's never reaches an argument.
	sqlEnv := append(slices.Clone(primary.env), "DB_PASSWORD=catalog-pw", "PGPASSWORD=su-pw", "PGSSLMODE=verify-full", "PGSSLROOTCERT="+caFile)
	if out, err := run(t, root(t), sqlEnv, "bash", "-c", fmt.Sprintf(
		"set -euo pipefail; source provisioning/lib.sh; service_database_sql | psql -q -v ON_ERROR_STOP=1 -h %s -p %d -U postgres postgres",
		primary.ip, primary.pgPort)); err != nil {
		t.Fatalf("service_database_sql on the leader: %v\n%s", err, out)
	}
	dsn := func(n *patroniNode) string {
		return fmt.Sprintf("host=%s port=%d dbname=catalog user=catalog password=catalog-pw sslmode=verify-full sslrootcert=%s connect_timeout=5", n.ip, n.pgPort, caFile)
	}
	db := openDB(t, dsn(primary))
	checkTLSOnly(t, primary, replica, dsn(primary), caFile, logs)
	execSQL := func(q string, args ...any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	execSQL(`CREATE TABLE stock (sku text PRIMARY KEY, n int NOT NULL)`)
	for i := range 20 {
		execSQL(`INSERT INTO stock VALUES ($1, $2)`, fmt.Sprintf("sku-%d", i), i)
	}

	// 3. Consul unreachable for longer than Patroni's retry_timeout (a Consul leader election under emulation
	// took 19 s in make vm-test): the primary keeps taking writes (failsafe mode) instead of demoting itself.
	// The primary stays only while the other member answers its POST /failsafe, from the member's own address:
	// the members are in the allowlist by address (PATRONI_MEMBERS), since Patroni forgets its view of the
	// cluster, and so the members allowlist_include_members names, when Consul does not answer. Asked from the
	// standby's address 15 s into the cut (past retry_timeout), the primary lets it in: a switchover without a
	// leader is refused for that (400, before Patroni asks Consul), not 403 `Access is denied` as with the
	// members from Consul alone.
	dcs.Cut()
	for i := range 25 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := db.ExecContext(ctx, `UPDATE stock SET n = n WHERE sku = 'sku-0'`)
		cancel()
		if err != nil {
			dcs.Restore()
			t.Fatalf("write on the primary %ds into Consul's absence: %v\n%s", i, err, logs())
		}
		if i == 15 {
			api := fmt.Sprintf("%s:%d", primary.ip, primary.apiPort)
			if code, body := postSwitchover(t, api, replica.ip, "rest-pw", "{}", caFile); code != http.StatusBadRequest {
				dcs.Restore()
				t.Fatalf("POST /switchover from the standby's address with Consul cut off: got %d %s; want the standby let in (400 for the empty request, not 403)", code, body)
			}
		}
		time.Sleep(time.Second)
	}
	dcs.Restore()
	db.Close()
	if got := waitCluster(t, consul.Client, 60*time.Second, "", logs); got != primary.name {
		t.Fatalf("after Consul came back: leader %s; want %s still", got, primary.name)
	}

	// 4. Read-your-writes through the failover (issue 27 §1). A commit is acknowledged only once the synchronous
	// standby has applied it (remote_apply): with the standby's replay paused, a write waits (Patroni resumes
	// the replay at its next loop), and once it is acknowledged the standby has it — with synchronous_commit
	// on it was acknowledged at once and a read from the paused standby missed it. A write whose wait is cut
	// short by its deadline is reported failed (a MaybeRanError), never as written.
	served, err := pgdb.Open(context.Background(), dsn(primary), 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	su := openDB(t, fmt.Sprintf("host=%s port=%d dbname=catalog user=postgres password=su-pw sslmode=verify-full sslrootcert=%s connect_timeout=5", replica.ip, replica.pgPort, caFile))
	defer su.Close()
	pause := func() {
		t.Helper()
		if _, err := su.Exec(`SELECT pg_wal_replay_pause()`); err != nil {
			t.Fatalf("pause the standby's replay: %v", err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var state string
			if err := su.QueryRow(`SELECT pg_get_wal_replay_pause_state()`).Scan(&state); err == nil && state == "paused" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the standby's replay did not pause within 5s")
			}
		}
	}
	onStandby := func(sku string) bool {
		t.Helper()
		var n int
		if err := su.QueryRow(`SELECT count(*) FROM stock WHERE sku = $1`, sku).Scan(&n); err != nil {
			t.Fatalf("read on the standby: %v", err)
		}
		return n == 1
	}
	pause()
	if _, err := served.ExecContext(context.Background(), `INSERT INTO stock VALUES ('paused', 1)`); err != nil {
		t.Fatalf("a write while the standby's replay is paused: %v", err)
	}
	if !onStandby("paused") {
		t.Fatal("a write acknowledged while the standby's replay was paused is not on the standby: a read there would miss it")
	}
	cut := false
	for try := 0; try < 5 && !cut; try++ {
		pause()
		sku := fmt.Sprintf("cut-%d", try)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := served.ExecContext(ctx, `INSERT INTO stock VALUES ($1, 0)`, sku)
		cancel()
		var maybe *pgdb.MaybeRanError
		switch {
		case errors.As(err, &maybe):
			cut = true
		case err == nil && !onStandby(sku):
			t.Fatalf("try %d: a write reported done is not on the synchronous standby", try+1)
		}
	}
	if !cut {
		t.Fatal("5 writes with a 300 ms deadline while the standby's replay was paused: none reported as cut short (want a MaybeRanError)")
	}
	if _, err := su.Exec(`SELECT pg_wal_replay_resume()`); err != nil {
		t.Fatalf("resume the standby's replay: %v", err)
	}

	// The leader crashes right after a write was acknowledged: a service's reads go at once to the standby (its
	// DATABASE_READ_URL pool, read while the cluster's keys in Consul name it the synchronous standby:
	// DATABASE_READ_CLUSTER and _MEMBER as the lab renders them) and find the write; then the standby is
	// promoted with every committed row, and the gate names it alone.
	gate := func(n *patroniNode) func(context.Context) bool {
		return app.PatroniGate(consul.Client, "shoplab/catalog-db", n.name, hclog.NewNullLogger())
	}
	if !gate(replica)(context.Background()) {
		t.Fatalf("the synchronous standby's gate: got no; want yes (cluster %+v)\n%s", readCluster(t, consul.Client), logs())
	}
	standby, err := pgdb.Pool(dsn(replica))
	if err != nil {
		t.Fatal(err)
	}
	defer standby.Close()
	service := pgdb.WrapRetrying(served, 3*time.Second, hclog.NewNullLogger()).ReadFrom(standby, gate(replica))
	if _, err := served.ExecContext(context.Background(), `INSERT INTO stock VALUES ('last', 1)`); err != nil {
		t.Fatalf("the last write before the crash: %v", err)
	}
	killed := time.Now()
	kill(primary)
	for i := range 5 {
		var n int
		start := time.Now()
		if err := service.QueryRowContext(context.Background(), `SELECT count(*) FROM stock WHERE sku IN ('last', 'paused')`).Scan(&n); err != nil || n != 2 || time.Since(start) > 2*time.Second {
			t.Fatalf("read %d with the leader dead: got %d rows, %v after %v; want the last write (and the paused one) from the standby within 2s", i+1, n, err, time.Since(start))
		}
	}
	waitCluster(t, consul.Client, 90*time.Second, replica.name, logs)
	t.Logf("failover: %s promoted %.1fs after %s was killed", replica.name, time.Since(killed).Seconds(), primary.name)
	if !gate(replica)(context.Background()) || gate(primary)(context.Background()) {
		t.Fatalf("the gates after the failover: got %s %v, %s %v; want the new leader's yes and the old one's no",
			replica.name, gate(replica)(context.Background()), primary.name, gate(primary)(context.Background()))
	}
	db = openDB(t, dsn(replica))
	defer db.Close()
	var rows, sum int
	if err := db.QueryRow(`SELECT count(*), coalesce(sum(n), 0) FROM stock WHERE sku NOT LIKE 'cut-%'`).Scan(&rows, &sum); err != nil || rows != 22 || sum != 192 {
		t.Fatalf("rows on the promoted member: got %d rows, sum %d, err %v; want 22, 192", rows, sum, err)
	}
	if _, err := db.Exec(`INSERT INTO stock VALUES ('after', 1)`); err != nil {
		t.Fatalf("write on the promoted member: %v", err)
	}
	// The dead member stays a target (Prometheus shows it down), the promoted one reports itself primary.
	if got := patroniPrimaries(t, consul.Client, primary.apiPort, caFile); got[replica.name] != "1" || got[primary.name] != "" {
		t.Fatalf("patroni_primary through the discovery after the failover: got %v; want %s 1 and %s unreachable", got, replica.name, primary.name)
	}

	// 5. The old leader comes back as a replica of the new one.
	start(primary)
	deadline := time.Now().Add(120 * time.Second)
	for {
		c := readCluster(t, consul.Client)
		m, ok := c.members[primary.name]
		if c.leader == replica.name && ok && m.Role == "replica" && m.State == "running" && slices.Contains(c.sync, primary.name) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not rejoin as the synchronous replica within 120s: %+v\n%s", primary.name, c, logs())
		}
		time.Sleep(500 * time.Millisecond)
	}

	// 6. The promoted member's tags written back by Consul's anti-entropy (hashicorp/consul#13578; make vm-test,
	// 2026-12-07: the agent held the catalog's old tags, the check its new role's): the cluster has no
	// primary.catalog-db for good, since Patroni registers only when its role changes. shoplab patroni-tags (a
	// unit on every database VM) registers the member again.
	id := "catalog-db/" + replica.name
	stale := &api.AgentServiceRegistration{ID: id, Name: "catalog-db", Address: replica.ip, Port: replica.pgPort,
		Tags: []string{"patroni", "replica"}, EnableTagOverride: true, Check: &api.AgentServiceCheck{
			HTTP: fmt.Sprintf("https://%s:%d/master", replica.ip, replica.apiPort), Interval: "5s", DeregisterCriticalServiceAfter: "150s"}}
	if err := consul.Client.Agent().ServiceRegister(stale); err != nil {
		t.Fatal(err)
	}
	primaryIDs := func() []string {
		t.Helper()
		entries, _, err := consul.Client.Health().Service("catalog-db", "primary", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range entries {
			ids = append(ids, e.Service.ID)
		}
		return ids
	}
	time.Sleep(5 * time.Second) // two of the test's Patroni loops
	if got := primaryIDs(); len(got) != 0 {
		t.Fatalf("primaries after the tags were written back: got %v; want none (Patroni does not register again)", got)
	}
	out, err = run(t, root(t), nil, testkit.Binary(t, "cmd/shoplab"), "patroni-tags", "--once", "--config", replica.config)
	if err != nil || !strings.Contains(out, "registered the member again") {
		t.Fatalf("shoplab patroni-tags --once: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(15 * time.Second); !slices.Equal(primaryIDs(), []string{id}); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("primaries 15s after shoplab patroni-tags: got %v; want [%s]", primaryIDs(), id)
		}
	}
	if out, err := run(t, root(t), nil, testkit.Binary(t, "cmd/shoplab"), "patroni-tags", "--once", "--config", replica.config); err != nil || out != "" {
		t.Fatalf("shoplab patroni-tags --once with the tags right: got %v\n%s; want nothing done", err, out)
	}
}

// postSwitchover sends body to POST /switchover of the REST API at api, with password, from the local address
// from; it returns the status and body.
func postSwitchover(t *testing.T, api, from, password, body, caFile string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://"+api+"/switchover", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("patroni", password)
	client := trustingClient(t, caFile)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	client.Transport.(*http.Transport).DialContext = dialer.DialContext
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /switchover from %s: %v", from, err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(answer)
}

// patroniConfig is the member's answer to GET /config: the cluster's dynamic configuration, as JSON.
func patroniConfig(t *testing.T, n *patroniNode, caFile string) string {
	t.Helper()
	transport, err := netx.TrustingTransport(caFile)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: transport, Timeout: 10 * time.Second}).Get(fmt.Sprintf("https://%s:%d/config", n.ip, n.apiPort))
	if err != nil {
		t.Fatalf("GET /config of %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func postmasterPID(t *testing.T, n *patroniNode) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// testCluster is the cluster's state as Consul holds it: the leader key, members and synchronous standbys.
type testCluster struct {
	leader  string
	members map[string]testMember
	sync    []string
}

type testMember struct {
	Role  string `json:"role"`
	State string `json:"state"`
}

func readCluster(t *testing.T, c *api.Client) testCluster {
	t.Helper()
	out := testCluster{members: map[string]testMember{}}
	pairs, _, err := c.KV().List("shoplab/catalog-db/", nil)
	if err != nil {
		return out
	}
	for _, p := range pairs {
		switch key := strings.TrimPrefix(p.Key, "shoplab/catalog-db/"); {
		case key == "leader":
			out.leader = string(p.Value)
		case key == "sync":
			var s struct {
				Standby string `json:"sync_standby"`
			}
			if json.Unmarshal(p.Value, &s) == nil && s.Standby != "" {
				out.sync = strings.Split(s.Standby, ",")
			}
		case strings.HasPrefix(key, "members/"):
			var m testMember
			_ = json.Unmarshal(p.Value, &m)
			out.members[strings.TrimPrefix(key, "members/")] = m
		}
	}
	return out
}

// waitCluster waits until the cluster has a leader (want, when given) registered in Consul as catalog-db with
// the tag primary and passing, and the other member passing as its synchronous replica; it returns the leader.
func waitCluster(t *testing.T, c *api.Client, within time.Duration, want string, logs func() string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cl := readCluster(t, c)
		primaries, _, err1 := c.Health().Service("catalog-db", "primary", true, nil)
		replicas, _, err2 := c.Health().Service("catalog-db", "replica", true, nil)
		ok := err1 == nil && err2 == nil && cl.leader != "" && (want == "" || cl.leader == want) &&
			len(primaries) == 1 && primaries[0].Service.ID == "catalog-db/"+cl.leader
		if ok && want != "" {
			return cl.leader // the other member is down: no replica to wait for
		}
		if ok && len(replicas) == 1 && len(cl.sync) == 1 && cl.sync[0] != cl.leader {
			return cl.leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cluster as wanted (leader %q) within %v: %+v, primaries %d, replicas %d\n%s", want, within, cl, len(primaries), len(replicas), logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// patroniPrimaries asks the lab's Prometheus discovery (lab.Discovery, /patroni) for the Patroni members, then
// each member's /metrics for its patroni_primary{scope="catalog-db"}: member → value ("" when it does not answer).
func patroniPrimaries(t *testing.T, c *api.Client, apiPort int, caFile string) map[string]string {
	t.Helper()
	srv := httptest.NewServer(lab.Discovery{Consul: c, PatroniAPIPort: apiPort}.Handler())
	defer srv.Close()
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	resp, err := http.Get(srv.URL + "/patroni")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&groups)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	client := trustingClient(t, caFile)
	for _, g := range groups {
		member := strings.TrimPrefix(g.Labels["instance"], "catalog-db/")
		if len(g.Targets) != 1 || g.Labels["service"] != "catalog-db" {
			t.Fatalf("discovery /patroni: got %+v; want one target of catalog-db per member", g)
		}
		out[member] = ""
		resp, err := client.Get("https://" + g.Targets[0] + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, `patroni_primary{scope="catalog-db"} `); ok {
				out[member] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// trustingClient is an HTTP client that verifies servers against caFile, as the lab's clients of Patroni do.
func trustingClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	transport, err := netx.TrustingTransport(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: transport}
}

// checkTLSOnly checks that the cluster takes TLS alone, verified both ways as issue 28 §4 asks: a plain
// connection is refused by pg_hba, a client that trusts another CA refuses the server, the service's connection
// and the standby's replication are encrypted; Patroni's REST API answers HTTPS only, and its unsafe endpoints
// (a switchover here) refuse a caller from an address that is neither a member's nor loopback even with the
// password, and a wrong password from loopback.
func checkTLSOnly(t *testing.T, primary, replica *patroniNode, dsn, caFile string, logs func() string) {
	t.Helper()
	refused := func(what, dsn, want string) {
		t.Helper()
		db := openDB(t, dsn)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: got %v; want an error with %q", what, err, want)
		}
	}
	refused("a plain connection", strings.Replace(dsn, "sslmode=verify-full", "sslmode=disable", 1), "no pg_hba.conf entry")
	wrong := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(wrong, newTestCA(t).pem, 0o644); err != nil {
		t.Fatal(err)
	}
	refused("a client trusting another CA", strings.Replace(dsn, caFile, wrong, 1), "certificate signed by unknown authority")

	su := openDB(t, fmt.Sprintf("host=%s port=%d dbname=postgres user=postgres password=su-pw sslmode=verify-full sslrootcert=%s connect_timeout=5", primary.ip, primary.pgPort, caFile))
	defer su.Close()
	var mine, standbys, encrypted int
	if err := su.QueryRow(`SELECT (SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl),
		count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)`).Scan(&mine, &standbys, &encrypted); err != nil {
		t.Fatal(err)
	}
	if mine != 1 || standbys != 1 || encrypted != 1 {
		t.Fatalf("TLS on the primary: got this connection %d, %d standbys of which %d encrypted; want 1, 1, 1\n%s", mine, standbys, encrypted, logs())
	}

	api := fmt.Sprintf("%s:%d", primary.ip, primary.apiPort)
	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + api + "/patroni"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("Patroni's REST API over plain HTTP: got 200; want it refused")
		}
	}
	switchover := func(from, password string) (int, string) {
		t.Helper()
		return postSwitchover(t, api, from, password, fmt.Sprintf(`{"leader": %q, "candidate": %q}`, primary.name, replica.name), caFile)
	}
	// 127.0.0.9 is neither a member nor the host's loopback address: the password does not help there.
	if code, body := switchover("127.0.0.9", "rest-pw"); code != http.StatusForbidden || !strings.Contains(body, "Access is denied") {
		t.Fatalf("POST /switchover with the password from a non-member address: got %d %s; want 403 Access is denied", code, body)
	}
	if code, body := switchover("127.0.0.1", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("POST /switchover with a wrong password from loopback: got %d %s; want 401", code, body)
	}
}
