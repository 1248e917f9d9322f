package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shoplab/lab/proc"
)

// RunFunc is the run function of a service's main package.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Service is a service under test, in-process or as a child process.
type Service struct {
	Name string
	Addr string // host:port it listens on
	// URL is its API: https://Addr for a mesh service (Call then presents TestIdentity's certificate),
	// http://Addr for the front.
	URL string
	// OpsURL serves /health and /metrics in plain HTTP: the operations listener of a mesh service or the front,
	// else URL.
	OpsURL string
	Env    map[string]string
	logs   *LogBuffer
	stop   func() error
	kill   func() error
	once   sync.Once
	err    error
}

// Kill stops a binary service with SIGKILL: no deregistration, no drain, its connections reset — a crash.
func (s *Service) Kill() error {
	if s.kill == nil {
		return fmt.Errorf("%s runs in-process; only a binary service can be killed", s.Name)
	}
	var err error
	s.once.Do(func() { err = s.kill() })
	return err
}

// Logs is what the service has logged so far.
func (s *Service) Logs() string { return s.logs.String() }

// Stop stops the service (SIGTERM or context cancel) and returns what run returned.
func (s *Service) Stop() error {
	s.once.Do(func() { s.err = s.stop() })
	return s.err
}

// LogBuffer collects log output safely from many goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func envWithListen(t testing.TB, env map[string]string) map[string]string {
	t.Helper()
	// A check every 500 ms, with room to answer when the whole test suite shares two cores.
	out := map[string]string{"LOG_LEVEL": "debug", "CHECK_INTERVAL": "500ms", "CHECK_TIMEOUT": "3s", "SHUTDOWN_GRACE": "0s"}
	for k, v := range env {
		out[k] = v
	}
	for _, k := range []string{"LISTEN_ADDR", "OPS_LISTEN_ADDR"} {
		if out[k] == "" {
			port, err := proc.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			out[k] = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	return out
}

func newService(name string, env map[string]string) *Service {
	return &Service{Name: name, Addr: env["LISTEN_ADDR"], URL: "http://" + env["LISTEN_ADDR"], OpsURL: "http://" + env["OPS_LISTEN_ADDR"],
		Env: env, logs: &LogBuffer{}}
}

// settle decides, once the service is live, how tests reach it: a service live on its operations listener
// is a mesh service, reached over mutual TLS once its API port presents its certificate — or, when its API
// port answers plain HTTP as shoplab does (a request id), one with an operations port and no mesh: the front.
func (s *Service) settle(t testing.TB, onOps bool, deadline time.Time) {
	t.Helper()
	if !onOps {
		s.OpsURL = s.URL
		return
	}
	for !servesTLS(s.Addr) {
		if servesPlain(s.URL) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: its API port %s presents no mesh certificate within 60s\n%s", s.Name, s.Addr, tail(s.Logs(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.URL = "https://" + s.Addr
	rememberMesh(s.Addr, s.Env["CONSUL_HTTP_ADDR"])
	t.Cleanup(func() { forgetMesh(s.Addr, "") })
}

// Run starts run in-process with env (LISTEN_ADDR and OPS_LISTEN_ADDR get free loopback ports unless set) and
// waits until its /health/live answers. At cleanup it is stopped and must have returned nil; its log is shown if
// the test failed. A port picked free and taken by another process before the service bound it (test packages
// run side by side) is picked again, twice at most.
func Run(t testing.TB, name string, run RunFunc, env map[string]string) *Service {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s, done := runOnce(name, run, envWithListen(t, env))
		deadline := time.Now().Add(60 * time.Second)
		live, onOps, exited, lastErr := awaitLive(s, done, deadline)
		if exited != nil && attempt < 3 && errors.Is(exited, syscall.EADDRINUSE) {
			t.Logf("%s: a port picked for it was taken meanwhile (%v); trying others", name, exited)
			continue
		}
		if exited == nil {
			t.Cleanup(func() {
				if err := s.Stop(); err != nil {
					t.Errorf("%s: run returned %v", name, err)
				}
				if t.Failed() {
					t.Logf("%s log (tail):\n%s", name, tail(s.Logs(), 60))
				}
			})
		}
		s.live(t, live, onOps, exited, lastErr, deadline)
		return s
	}
}

// runOnce starts run in-process with env; done receives what it returns.
func runOnce(name string, run RunFunc, env map[string]string) (*Service, chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newService(name, env)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard, s.logs)
	}()
	s.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%s did not stop within 30s", name)
		}
	}
	return s, done
}

// awaitLive waits until the service answers /health/live, on its operations listener (a mesh service, the
// front: onOps) or its only port (live), until it exits (exited: what it returned) or until deadline (lastErr:
// the last probe's error).
func awaitLive(s *Service, done chan error, deadline time.Time) (live, onOps bool, exited, lastErr error) {
	client := &http.Client{Timeout: time.Second}
	for {
		for _, base := range []string{s.OpsURL, s.URL} {
			var resp *http.Response
			if resp, lastErr = client.Get(base + "/health/live"); lastErr == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return true, base == s.OpsURL, nil, nil
				}
			}
		}
		select {
		case err := <-done:
			done <- err // for Stop
			if err == nil {
				err = errors.New("run returned nil before serving")
			}
			return false, false, err, lastErr
		default:
		}
		if time.Now().After(deadline) {
			return false, false, nil, lastErr
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLive waits until the service answers /health/live (awaitLive) and settles how tests reach it, or fails
// the test.
func waitLive(t testing.TB, s *Service, done chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	live, onOps, exited, lastErr := awaitLive(s, done, deadline)
	s.live(t, live, onOps, exited, lastErr, deadline)
}

// live settles how tests reach a service awaitLive found live, or fails the test with why it is not.
func (s *Service) live(t testing.TB, live, onOps bool, exited, lastErr error, deadline time.Time) {
	t.Helper()
	switch {
	case exited != nil:
		t.Fatalf("%s exited while starting: %v\n%s", s.Name, exited, tail(s.Logs(), 40))
	case !live:
		t.Fatalf("%s did not answer /health/live within 60s: %v\n%s", s.Name, lastErr, tail(s.Logs(), 40))
	}
	s.settle(t, onOps, deadline)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var (
	buildMu    sync.Mutex
	buildDir   string
	buildPaths = map[string]string{}
)

// Binary builds the command at pkg (a path from the repository root such as "services/catalog") once per test
// package and returns the binary's path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildPaths[pkg]; ok {
		return p
	}
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "shoplab-bin-"); err != nil {
			t.Fatal(err)
		}
		dir := buildDir
		atExit(func() { os.RemoveAll(dir) })
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildPaths[pkg] = out
	return out
}

// Start runs the binary at path as a child process with env (added to this process's environment; LISTEN_ADDR
// gets a free port unless set), waits for /health/live, and stops it with SIGTERM at cleanup.
func Start(t testing.TB, name, path string, env map[string]string) *Service {
	t.Helper()
	env = envWithListen(t, env)
	logPath := filepath.Join(t.TempDir(), name+".log")
	full := os.Environ()
	for k, v := range env {
		full = append(full, k+"="+v)
	}
	p, err := proc.Start(proc.Spec{Name: name, Path: path, Env: full, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	s := newService(name, env)
	s.stop = func() error {
		err := p.Stop(syscall.SIGTERM, 30*time.Second)
		_, _ = s.logs.Write([]byte(proc.TailFile(logPath, 400)))
		return err
	}
	s.kill = func() error {
		err := p.Stop(syscall.SIGKILL, 10*time.Second)
		_, _ = s.logs.Write([]byte(proc.TailFile(logPath, 400)))
		return err
	}
	done := make(chan error, 1)
	go func() {
		<-p.Done()
		_, e := p.Exited()
		done <- fmt.Errorf("process exited: %v\n%s", e, proc.TailFile(logPath, 40))
	}()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(s.Logs(), 60))
		}
	})
	waitLive(t, s, done)
	return s
}

// servesPlain reports whether url answers plain HTTP as a shoplab service does (with a request id; a TLS port
// answers a plain request with Go's own 400, without one).
func servesPlain(url string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url + "/health/live")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.Header.Get("X-Request-ID") != ""
}
