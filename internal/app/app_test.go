package app

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"shoplab/internal/health"
	"shoplab/internal/pgdb"
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
	c, err := Load("x", "127.0.0.1:1", env())
	if err != nil || c.Listen != "127.0.0.1:1" || c.CheckInterval != 2*time.Second || c.Consul.Address != "127.0.0.1:8500" {
		t.Fatalf("defaults: got %+v, %v", c, err)
	}
	c, err = Load("x", "", env("CHECK_INTERVAL", "250ms", "LOG_FORMAT", "json", "CONSUL_HTTP_ADDR", "http://10.0.0.1:8500"))
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
		if _, err := Load("x", "", env(b.k, b.v)); err == nil || !strings.Contains(err.Error(), b.want) {
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

// TestReadinessGrace: a database without a primary only warns for the grace period, then fails — unless a
// replica pool answers, which serves reads: then it keeps warning.
func TestReadinessGrace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now: connections are refused, as while no primary is up
	db, err := sql.Open("postgres", fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable connect_timeout=1", addr.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	replica, err := pgdb.Pool(testkit.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	status := func(check func(context.Context) error) string {
		return health.Run(context.Background(), 2*time.Second, health.Check{Name: "database", Run: check}).Status
	}
	alone := readiness(&pgdb.Schema{}, db, nil, 400*time.Millisecond)
	withReplica := readiness(&pgdb.Schema{}, db, replica, 400*time.Millisecond)
	for name, check := range map[string]func(context.Context) error{"alone": alone, "with a replica": withReplica} {
		if got := status(check); got != "warn" {
			t.Errorf("%s, within the grace: got %q; want warn", name, got)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if got := status(alone); got != "fail" {
		t.Errorf("alone, after the grace: got %q; want fail", got)
	}
	if got := status(withReplica); got != "warn" {
		t.Errorf("with a replica, after the grace: got %q; want warn (reads are still served)", got)
	}
}
