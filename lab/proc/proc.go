// Package proc starts and stops the child processes of tests and of the local lab: each is tied to its parent
// (it gets a signal if the parent dies), writes to a log file, and is stopped by its own PID only.
package proc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is a started child.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
}

// Spec describes a child to start.
type Spec struct {
	Name    string
	Path    string
	Args    []string
	Env     []string // nil: inherit
	Dir     string
	LogPath string // stdout and stderr go here (appended); "" discards
	// ParentDeath is sent to the child if this process dies first (default SIGTERM).
	ParentDeath syscall.Signal
	// Credential runs the child as another user (PostgreSQL refuses to run as root).
	Credential *syscall.Credential
}

// Start starts s.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = s.Env
	cmd.Dir = s.Dir
	sig := s.ParentDeath
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig, Setpgid: true, Credential: s.Credential}
	if s.LogPath != "" {
		f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", s.Name, err)
		}
		defer f.Close()
		if s.Credential != nil {
			_ = f.Chown(int(s.Credential.Uid), int(s.Credential.Gid))
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", s.Name, s.Path, err)
	}
	p := &Process{Name: s.Name, Cmd: cmd, LogPath: s.LogPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID is the child's process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends sig to the child's PID and waits up to grace for it to exit, then kills it.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	if done, _ := p.Exited(); done {
		return nil
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s (pid %d): %w", p.Name, p.PID(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stop %s (pid %d): still running after %s; killed", p.Name, p.PID(), grace)
}

// Tail returns the last n lines of the child's log.
func (p *Process) Tail(n int) string { return TailFile(p.LogPath, n) }

// TailFile returns the last n lines of the file at path ("" if unreadable).
func TailFile(path string, n int) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n distinct free ports.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// PortFree reports whether addr (host:port) can be listened on now.
func PortFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// WaitFor calls ok every interval until it returns nil, the child exits, or timeout passes.
func WaitFor(p *Process, timeout, interval time.Duration, ok func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ok(); last == nil {
			return nil
		}
		if p != nil {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited (%v) while starting: %s", p.Name, err, lastLines(p))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		}
		time.Sleep(interval)
	}
}

func lastLines(p *Process) string {
	if t := p.Tail(15); t != "" {
		return "last log lines:\n" + t
	}
	return "no log output"
}

// RepoRoot walks up from the working directory to the shoplab module root (the go.mod of module shoplab).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(dir + "/go.mod")
		if err == nil && strings.HasPrefix(string(b), "module shoplab\n") {
			return dir, nil
		}
		parent := dir[:max(strings.LastIndex(dir, "/"), 1)]
		if parent == dir || dir == "/" {
			return "", errors.New("not inside the shoplab repository (no go.mod of module shoplab above the working directory)")
		}
		dir = parent
	}
}
