// Package consulagent starts a real Consul agent in dev mode on loopback ports: for tests and the local lab.
package consulagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"shoplab/lab/proc"
)

// InstallHint says how to get a consul binary here.
const InstallHint = "build it with: make consul (pinned in tools/consul; about 5 minutes once), or put consul on PATH, or set CONSUL_BIN"

// Binary finds consul: $CONSUL_BIN, then consul on PATH, then bin/consul of the repository (make consul).
func Binary() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CONSUL_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	if root, err := proc.RepoRoot(); err == nil {
		p := filepath.Join(root, "bin", "consul")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("consul binary not found; " + InstallHint)
}

// Options configures a dev agent.
type Options struct {
	Binary   string // default: Binary()
	HTTPPort int    // 0 picks a free port
	Node     string // default "shoplab"
	LogPath  string
	LogLevel string // default "warn"
	// ChecksCAFile is a CA (PEM) the agent's HTTPS health checks verify servers against, as the VM lab's
	// agents check Patroni's REST API (enable_agent_tls_for_checks); empty: the system's roots.
	ChecksCAFile string
}

// Agent is a running dev agent.
type Agent struct {
	HTTPAddr string // 127.0.0.1:port
	Node     string
	proc     *proc.Process
}

// StartDev starts `consul agent -dev` bound to 127.0.0.1 with every port chosen free (DNS, gRPC off) and waits
// until it has a leader (at most 30 s).
func StartDev(ctx context.Context, o Options) (*Agent, error) {
	if o.Binary == "" {
		b, err := Binary()
		if err != nil {
			return nil, err
		}
		o.Binary = b
	}
	if o.Node == "" {
		o.Node = "shoplab"
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.HTTPPort != 0 && !proc.PortFree(fmt.Sprintf("127.0.0.1:%d", o.HTTPPort)) {
		return nil, fmt.Errorf("Consul HTTP port 127.0.0.1:%d is taken; stop what uses it (another consul?) or choose another port", o.HTTPPort)
	}
	// The agent's other ports are picked free just before it starts; another process may take one in between.
	// An agent that exits while starting is tried again (three times at most) on fresh ports.
	var err error
	for attempt := 1; ; attempt++ {
		var a *Agent
		a, err = startDev(ctx, o)
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, errExitedEarly) || attempt == 3 {
			return nil, err
		}
	}
}

// errExitedEarly is an agent that exited before it answered (a port taken between picking and binding).
var errExitedEarly = errors.New("consul exited while starting")

func startDev(ctx context.Context, o Options) (*Agent, error) {
	ports, err := proc.FreePorts(4) // one call: distinct ports
	if err != nil {
		return nil, err
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = ports[3]
	}
	args := []string{"agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", o.Node,
		"-http-port", strconv.Itoa(o.HTTPPort), "-dns-port", "-1", "-grpc-port", "-1",
		"-server-port", strconv.Itoa(ports[0]), "-serf-lan-port", strconv.Itoa(ports[1]), "-serf-wan-port", strconv.Itoa(ports[2]),
		"-hcl", "ports { grpc_tls = -1 }", "-hcl", `telemetry { prometheus_retention_time = "1m" disable_hostname = true }`,
		"-log-level", o.LogLevel}
	if o.ChecksCAFile != "" {
		args = append(args, "-hcl", fmt.Sprintf("tls { defaults { ca_file = %q } }", o.ChecksCAFile), "-hcl", "enable_agent_tls_for_checks = true")
	}
	p, err := proc.Start(proc.Spec{Name: "consul", Path: o.Binary, Args: args, LogPath: o.LogPath, ParentDeath: syscall.SIGTERM})
	if err != nil {
		return nil, err
	}
	a := &Agent{HTTPAddr: fmt.Sprintf("127.0.0.1:%d", o.HTTPPort), Node: o.Node, proc: p}
	client := &http.Client{Timeout: time.Second}
	err = proc.WaitFor(p, 30*time.Second, 50*time.Millisecond, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.HTTPAddr+"/v1/status/leader", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b [64]byte
		n, _ := resp.Body.Read(b[:])
		if resp.StatusCode != http.StatusOK || n <= 2 {
			return errors.New("no leader yet")
		}
		return nil
	})
	if err != nil {
		exited, _ := p.Exited()
		_ = a.Stop()
		if exited {
			return nil, fmt.Errorf("consul: %w: %w", errExitedEarly, err)
		}
		return nil, fmt.Errorf("consul: %w", err)
	}
	return a, nil
}

// PID is the agent's process id.
func (a *Agent) PID() int { return a.proc.PID() }

// Stop stops the agent (SIGTERM, then kill after 10 s).
func (a *Agent) Stop() error { return a.proc.Stop(syscall.SIGTERM, 10*time.Second) }
