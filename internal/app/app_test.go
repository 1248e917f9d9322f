package app

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/health"
	"shoplab/internal/pgdb"
	"shoplab/internal/topology"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestLoad(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	port, _ := topology.Default().Port("catalog")
	c, err := Load("catalog", env())
	if want := fmt.Sprintf("127.0.0.1:%d", port); err != nil || c.Listen != want || c.CheckInterval != 2*time.Second || c.Consul.Address != "127.0.0.1:8500" {
		t.Fatalf("defaults: got %+v, %v", c, err)
	}
	if _, err := Load("x", env()); err == nil || !strings.Contains(err.Error(), "LISTEN_ADDR") {
		t.Errorf("a service the topology lacks, without LISTEN_ADDR: got %v; want an error naming LISTEN_ADDR", err)
	}
	c, err = Load("x", env("LISTEN_ADDR", "127.0.0.1:1", "CHECK_INTERVAL", "250ms", "LOG_FORMAT", "json", "CONSUL_HTTP_ADDR", "http://10.0.0.1:8500"))
	if err != nil || c.CheckInterval != 250*time.Millisecond || !c.LogJSON || c.Consul.Address != "http://10.0.0.1:8500" {
		t.Fatalf("set: got %+v, %v", c, err)
	}
	bad := []struct{ k, v, want string }{
		{"CHECK_INTERVAL", "often", "CHECK_INTERVAL"},
		{"CHECK_TIMEOUT", "-1s", "CHECK_TIMEOUT"},
		{"LOG_FORMAT", "xml", "LOG_FORMAT"},
		{"LOG_LEVEL", "loud", "LOG_LEVEL"},
	}
	for _, b := range bad {
		if _, err := Load("catalog", env(b.k, b.v)); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s=%s: got %v; want an error naming %s", b.k, b.v, err, b.want)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	tests := []struct {
		configured string
		bound      string
		want       string
		wantErr    bool
	}{
		{"", "127.0.0.1", "127.0.0.1", false},
		{"", "0.0.0.0", "", true},
		{"192.168.56.11", "0.0.0.0", "192.168.56.11", false},
		{"0.0.0.0", "0.0.0.0", "", true},
		{"node-1", "127.0.0.1", "", true},
	}
	for _, tc := range tests {
		got, err := advertiseAddr(tc.configured, &net.TCPAddr{IP: net.ParseIP(tc.bound), Port: 1})
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("advertiseAddr(%q, %s): got %q, %v; want %q, error %v", tc.configured, tc.bound, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestReadinessThroughAFailover: a database without a primary only warns for the grace period, counted from
// the first check that found it gone, then fails — unless a replica answers, which serves reads: then it keeps
// warning. The primary here goes silent as a powered-off host does (the proxy hangs: nothing refused, nothing
// answered), and the checks come further apart than grace, as Consul's do in the VM lab.
// Before: every check below after the primary went silent failed — the grace was counted from the last passing
// check, and the silent primary used up the check's time before the replica was asked.
func TestReadinessThroughAFailover(t *testing.T) {
	dsn := testkit.NewDatabase(t)
	replica, err := pgdb.Pool(dsn) // stands in for a replica: it answers reads throughout
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	ctx := context.Background()
	if _, err := replica.ExecContext(ctx, `CREATE TABLE schema_migrations (version bigint NOT NULL, dirty boolean NOT NULL);
		INSERT INTO schema_migrations VALUES (0, false)`); err != nil {
		t.Fatal(err)
	}
	pg := testkit.Postgres(t)
	proxy := testkit.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port))
	primary, err := pgdb.Pool(strings.ReplaceAll(dsn, fmt.Sprintf("port=%d", pg.Port), fmt.Sprintf("port=%d", proxy.Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()

	const grace, interval, checkTime = 300 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond
	yes := func(context.Context) bool { return true }
	no := func(context.Context) bool { return false }
	checks := []struct {
		name  string
		check func(context.Context) error
	}{
		{"alone", readiness(&pgdb.Schema{}, primary, nil, nil, grace)},
		{"with a replica", readiness(&pgdb.Schema{}, primary, replica, yes, grace)},
		{"with a replica that may be behind (its gate says no)", readiness(&pgdb.Schema{}, primary, replica, no, grace)},
	}
	steps := []struct {
		name  string
		do    func()
		wants [3]string // alone, with a replica, with one behind
	}{
		{"primary up", func() {}, [3]string{"pass", "pass", "pass"}},
		{"primary silent, first check", proxy.Hang, [3]string{"warn", "warn", "warn"}},
		{"primary silent, after the grace", func() {}, [3]string{"fail", "warn", "fail"}},
		{"primary silent, later", func() {}, [3]string{"fail", "warn", "fail"}},
		{"primary back", proxy.Restore, [3]string{"pass", "pass", "pass"}},
	}
	for _, step := range steps {
		step.do()
		for i, c := range checks {
			began := time.Now()
			rep := health.Run(ctx, checkTime, health.Check{Name: "database", Run: c.check})
			if took := time.Since(began); took > checkTime+500*time.Millisecond {
				t.Errorf("%s, %s: the check took %s; want it within %s", step.name, c.name, took.Round(time.Millisecond), checkTime)
			}
			if rep.Status != step.wants[i] {
				t.Errorf("%s, %s: got %q (%+v); want %q", step.name, c.name, rep.Status, rep.Checks, step.wants[i])
			}
		}
		time.Sleep(interval)
	}
}

// TestReadGateConfig: a replica pool comes with its gate (the Patroni cluster and member), and the gate only
// with the pool.
func TestReadGateConfig(t *testing.T) {
	both := func(kv ...string) map[string]string {
		env := map[string]string{"DATABASE_READ_URL": "host=x", "DATABASE_READ_CLUSTER": "shoplab/catalog-db", "DATABASE_READ_MEMBER": "catalog-2"}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	tests := []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"neither", map[string]string{}, true},
		{"all three", both(), true},
		{"a pool without its gate", map[string]string{"DATABASE_READ_URL": "host=x"}, false},
		{"a pool without its member", both("DATABASE_READ_MEMBER", ""), false},
		{"a gate without a pool", both("DATABASE_READ_URL", ""), false},
		{"a cluster with a leading slash", both("DATABASE_READ_CLUSTER", "/shoplab/catalog-db"), false},
		{"a cluster with a trailing slash", both("DATABASE_READ_CLUSTER", "shoplab/catalog-db/"), false},
		{"a member that is a path", both("DATABASE_READ_MEMBER", "members/catalog-2"), false},
	}
	for _, tc := range tests {
		_, err := Load("catalog", func(k string) string { return tc.env[k] })
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestPatroniGate: the gate reads the cluster's keys as Patroni writes them into a real Consul agent and says
// yes only for the leader, and for a synchronous standby of the leader the key names (or of none: the leader
// is gone). An agent that cannot be reached is a no. (provisioning's TestPatroniCluster runs it beside a real
// Patroni cluster through a failover.)
func TestPatroniGate(t *testing.T) {
	consul := testkit.SharedConsul(t)
	cluster := "shoplab/gate-test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	put := func(key, value string) {
		t.Helper()
		var err error
		if value == "" {
			_, err = consul.Client.KV().Delete(cluster+"/"+key, nil)
		} else {
			_, err = consul.Client.KV().Put(&api.KVPair{Key: cluster + "/" + key, Value: []byte(value)}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, leader, sync, member string
		want                       bool
	}{
		{"the leader", "catalog-1", `{"leader":"catalog-1","sync_standby":"catalog-2"}`, "catalog-1", true},
		{"the leader, no sync key", "catalog-1", "", "catalog-1", true},
		{"the synchronous standby", "catalog-1", `{"leader":"catalog-1","sync_standby":"catalog-2"}`, "catalog-2", true},
		{"one of two synchronous standbys", "catalog-1", `{"leader":"catalog-1","sync_standby":"catalog-3, catalog-2"}`, "catalog-2", true},
		{"the standby while the leader key is gone", "", `{"leader":"catalog-1","sync_standby":"catalog-2"}`, "catalog-2", true},
		{"an asynchronous standby", "catalog-1", `{"leader":"catalog-1","sync_standby":"catalog-3"}`, "catalog-2", false},
		{"no synchronous standby", "catalog-1", `{"leader":"catalog-1","sync_standby":null}`, "catalog-2", false},
		{"the standby of a leader that lost the key", "catalog-3", `{"leader":"catalog-1","sync_standby":"catalog-2"}`, "catalog-2", false},
		{"no keys at all", "", "", "catalog-2", false},
		{"a sync key that is not JSON", "", "catalog-2", "catalog-2", false},
	} {
		put("leader", tc.leader)
		put("sync", tc.sync)
		gate := PatroniGate(consul.Client, cluster, tc.member, hclog.NewNullLogger())
		if got := gate(context.Background()); got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.name, got, tc.want)
		}
	}

	put("leader", "catalog-2")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // nothing listens there now: connections are refused
	gone, err := api.NewClient(&api.Config{Address: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	log := hclog.New(&hclog.LoggerOptions{Output: &logged})
	gate := PatroniGate(gone, cluster, "catalog-2", log)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if gate(ctx) || gate(ctx) {
		t.Fatal("a gate whose Consul agent does not answer: got yes; want no")
	}
	if n := strings.Count(logged.String(), "could not read"); n != 1 {
		t.Errorf("two failed asks logged %d times; want once:\n%s", n, logged.String())
	}
}
