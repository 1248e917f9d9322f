package testkit

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a target and can cut them, to make a dependency
// unreachable without stopping it.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	hang   bool
	conns  map[net.Conn]net.Conn // each forwarded client connection and its connection to the target
	parked []net.Conn            // Hang's: client connections kept open and never answered
	marker []byte                // CutAfterReply's: the skip+1st reply containing it is dropped, its connection closed
	skip   int
}

// NewProxy listens on a free loopback port and forwards to target until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]net.Conn{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		switch {
		case p.cut:
			c.Close()
		case p.hang:
			p.parked = append(p.parked, c)
		default:
			go p.forward(c)
		}
		p.mu.Unlock()
	}
}

func (p *Proxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c] = up
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { p.reply(c, up); done <- struct{}{} }()
	<-done
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	if p.hang {
		p.parked = append(p.parked, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// reply copies what the server sends to the client, until either side closes or a reply holds the marker
// CutAfterReply armed.
func (p *Proxy) reply(c, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			p.mu.Lock()
			hit := p.marker != nil && bytes.Contains(buf[:n], p.marker)
			if hit && p.skip > 0 {
				p.skip, hit = p.skip-1, false
			}
			if hit {
				p.marker = nil
			}
			p.mu.Unlock()
			if hit {
				return // forward closes both sides
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// CutAfterReply arms the proxy once: the nth reply from the server from now on that contains marker (say a
// PostgreSQL command tag, "INSERT 0 1"; nth from 1) is dropped and its connection closed on both sides. The
// server has done what it was asked; its client never hears.
func (p *Proxy) CutAfterReply(marker []byte, nth int) {
	p.mu.Lock()
	p.marker, p.skip = marker, nth-1
	p.mu.Unlock()
}

// Cut closes every forwarded connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c, up := range p.conns {
		c.Close()
		up.Close()
	}
	p.closeParked()
}

// Hang makes the target behave like a powered-off host rather than a stopped server: forwarded connections go
// silent (their client side stays open and is never answered) and new ones are accepted and never answered,
// until Restore. Nothing is refused or closed, so a client waits until its own deadline.
func (p *Proxy) Hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hang = true
	for _, up := range p.conns {
		up.Close()
	}
}

// Restore forwards new connections again; connections left silent by Hang are closed.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.hang = false, false
	p.closeParked()
}

func (p *Proxy) closeParked() {
	for _, c := range p.parked {
		c.Close()
	}
	p.parked = nil
}
