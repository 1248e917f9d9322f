// Package testkit gives tests real dependencies: a throwaway PostgreSQL cluster per test package with a fresh
// database per test, real Consul dev agents on free loopback ports, services run in-process through their
// run function or as built binaries, and a TCP proxy that can cut a service off from its database.
//
// A test whose tool is missing fails when CI is set and otherwise skips, saying what to install.
package testkit

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/consulx"
	"shoplab/lab/consulagent"
	"shoplab/lab/pgcluster"
)

// Need stops a test that lacks a tool: a failure in CI (CI is set), a skip naming the install step elsewhere.
func Need(t testing.TB, what string, err error, hint string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing in CI: %v; %s", what, err, hint)
	}
	t.Skipf("skipping: %s is missing: %v; %s", what, err, hint)
}

var (
	pgOnce    sync.Once
	pgCluster *pgcluster.Cluster
	pgErr     error
	pgDir     string
	dbSeq     atomic.Int64

	cleanupMu sync.Mutex
	cleanups  []func()
)

// Main runs the package's tests and then stops what testkit started for the whole package. Call it from
// TestMain: func TestMain(m *testing.M) { testkit.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	if pgCluster != nil {
		if err := pgCluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testkit: stop postgres:", err)
		}
	}
	if pgDir != "" {
		os.RemoveAll(pgDir)
	}
	os.Exit(code)
}

func atExit(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

// Postgres returns the package's cluster, starting it on first use.
func Postgres(t testing.TB) *pgcluster.Cluster {
	t.Helper()
	pgOnce.Do(func() {
		pgDir, pgErr = os.MkdirTemp("", "shoplab-pg-")
		if pgErr != nil {
			return
		}
		pgCluster, pgErr = pgcluster.Start(context.Background(), pgcluster.Options{Dir: pgDir, Fast: true, TrustHost: true})
	})
	Need(t, "PostgreSQL", pgErr, pgcluster.InstallHint)
	return pgCluster
}

// NewDatabase creates an empty database for this test and returns its DSN; it is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	c := Postgres(t)
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), dbSeq.Add(1))
	dsn, err := c.EnsureDatabase(context.Background(), name, name, "")
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(context.Background(), name); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	return dsn
}

// Consul is a running dev agent and a client for it.
type Consul struct {
	*consulagent.Agent
	Client *api.Client
}

// NewConsul starts a dev agent for this test alone (use it when the test stops the agent or must not see
// other tests' services); it is stopped when the test ends.
func NewConsul(t testing.TB) *Consul {
	t.Helper()
	return NewConsulWith(t, consulagent.Options{})
}

// NewConsulWith is NewConsul with options for the agent (its log path and node name are the kit's).
func NewConsulWith(t testing.TB, o consulagent.Options) *Consul {
	t.Helper()
	c, err := startConsul(t.TempDir(), o)
	if err != nil {
		bin, binErr := consulagent.Binary()
		if binErr != nil {
			Need(t, "consul", binErr, consulagent.InstallHint)
		}
		t.Fatalf("start consul (%s): %v", bin, err)
	}
	t.Cleanup(func() {
		forgetMesh("", c.HTTPAddr)
		_ = c.Stop()
	})
	return c
}

var (
	sharedOnce   sync.Once
	sharedConsul *Consul
	sharedErr    error
)

// SharedConsul returns one dev agent for the whole package, started on first use.
func SharedConsul(t testing.TB) *Consul {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoplab-consul-")
		if err != nil {
			sharedErr = err
			return
		}
		sharedConsul, sharedErr = startConsul(dir, consulagent.Options{})
		atExit(func() {
			if sharedConsul != nil {
				_ = sharedConsul.Stop()
			}
			os.RemoveAll(dir)
		})
	})
	if sharedErr != nil {
		_, binErr := consulagent.Binary()
		Need(t, "consul", binErr, consulagent.InstallHint)
		t.Fatalf("start consul: %v", sharedErr)
	}
	return sharedConsul
}

func startConsul(dir string, o consulagent.Options) (*Consul, error) {
	o.LogPath, o.Node = dir+"/consul.log", "test"
	a, err := consulagent.StartDev(context.Background(), o)
	if err != nil {
		return nil, err
	}
	client, err := consulx.NewClient(consulx.ClientConfig{Address: a.HTTPAddr})
	if err != nil {
		_ = a.Stop()
		return nil, err
	}
	return &Consul{Agent: a, Client: client}, nil
}
