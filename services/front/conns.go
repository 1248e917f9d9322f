package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"shoplab/internal/web"
)

// What the front holds for its clients is bounded, so that no client, and no few thousand connections, can
// take its memory (issue 28 §3): a client's connections in all and per address (connLimits, refused at accept
// with the error body), the time to send a request head and a body (engine), and the memory held by request
// bodies larger than what fasthttp reads with the head (bodyBudget). What the rest costs is measured in
// docs/benchmarks.md ("The front under many connections").

// connLimits counts the clients' connections, in all and per address.
type connLimits struct {
	max, perAddr int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

func newConnLimits(max, perAddr int) *connLimits {
	return &connLimits{max: max, perAddr: perAddr, byAddr: map[netip.Addr]int{}}
}

// admit counts a new connection from addr, or answers the status it is refused with: 429 past the address's
// share, 503 past the front's.
func (l *connLimits) admit(addr netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.byAddr[addr] >= l.perAddr:
		return http.StatusTooManyRequests
	case l.total >= l.max:
		return http.StatusServiceUnavailable
	}
	l.byAddr[addr]++
	l.total++
	return 0
}

// leave uncounts a connection admit counted.
func (l *connLimits) leave(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// Lingering: when the front closes a connection whose client may still be sending (a body too large, a
// request it could not read, a connection refused), closing at once makes the kernel answer the unread bytes
// with a reset, and a client that sends its whole body before reading (Python's urllib, curl without
// Expect) never reads the answer. So the front first shuts down its side for writing, then reads and discards
// what still comes, for a bounded time and amount, before it closes.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 4 * web.DefaultBodyLimit
)

// clientListener admits the clients' connections within connLimits; the others get their refusal (at most
// maxRefusing answered at once, the rest closed).
type clientListener struct {
	net.Listener
	limits   *connLimits
	yield    bool          // connections step aside before reading after a write (yieldconn.go)
	refusing chan struct{} // a slot per refusal being answered
}

// maxRefusing bounds the goroutines that answer refused connections.
const maxRefusing = 64

func newClientListener(ln net.Listener, limits *connLimits, yield bool) *clientListener {
	return &clientListener{Listener: ln, limits: limits, yield: yield, refusing: make(chan struct{}, maxRefusing)}
}

func (l *clientListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := connAddr(c)
		status := l.limits.admit(addr)
		if status == 0 {
			return &clientConn{Conn: c, aw: afterWrite{on: l.yield}, leave: func() { l.limits.leave(addr) }}, nil
		}
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				refuse(c, status)
			}()
		default:
			_ = c.Close()
		}
	}
}

// connAddr is the client's address of c (the zero Addr if it has none: a test's pipe).
func connAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// refuse answers a connection past a limit with the error body and closes it, lingering.
func refuse(c net.Conn, status int) {
	code, msg := "too_many_connections", "too many connections from your address; close some and try again"
	if status == http.StatusServiceUnavailable {
		code, msg = "busy", "the front is serving as many connections as it may; try again shortly"
	}
	id := web.NewRequestID()
	body := web.ErrorJSON(code, msg, id)
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nRetry-After: 1\r\nConnection: close\r\n" +
		web.RequestIDHeader + ": " + id + "\r\nX-Content-Type-Options: nosniff\r\n\r\n"
	_ = c.SetWriteDeadline(time.Now().Add(lingerTime))
	if _, err := c.Write(append([]byte(head), body...)); err != nil {
		_ = c.Close()
		return
	}
	lingerClose(c)
}

// lingerClose shuts c down for writing, discards what the client still sends (at most lingerBytes, for at most
// lingerTime), and closes it.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c, lingerBytes)
	}
	_ = c.Close()
}

// clientConn is a client's connection to the front. fasthttp serves one connection from one goroutine at a
// time, so its state needs no lock.
type clientConn struct {
	net.Conn
	aw     afterWrite
	linger atomic.Bool // close with lingerClose: the client may still be sending
	leave  func()
	closed atomic.Bool // Shutdown may close an idle connection while its goroutine does too
}

func (c *clientConn) Read(p []byte) (int, error) {
	c.aw.beforeRead()
	return c.Conn.Read(p)
}

func (c *clientConn) Write(p []byte) (int, error) {
	c.aw.wrote = true
	return c.Conn.Write(p)
}

// Close closes the connection, lingering if it was asked to, and uncounts it.
func (c *clientConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	defer c.leave()
	if c.linger.Load() {
		lingerClose(c.Conn)
		return nil
	}
	return c.Conn.Close()
}

// lingerOnClose asks the connection of ctx to linger when it is closed.
func lingerOnClose(c net.Conn) {
	if cc, ok := c.(*clientConn); ok {
		cc.linger.Store(true)
	}
}

// bodyBudget bounds the memory held by request bodies the front reads past the first bytes fasthttp reads with
// the head: a body declaring a megabyte takes a megabyte of the budget, and waits for it at most wait.
type bodyBudget struct {
	sem  *semaphore.Weighted
	wait time.Duration
}

func newBodyBudget(bytes int64, wait time.Duration) *bodyBudget {
	return &bodyBudget{sem: semaphore.NewWeighted(bytes), wait: wait}
}

// errNoBodyBudget: the body budget stayed spent for as long as a request may wait for it.
var errNoBodyBudget = errors.New("request bodies hold the front's budget")

// take reserves n bytes of the budget and returns what gives them back.
func (b *bodyBudget) take(ctx context.Context, n int64) (func(), error) {
	ctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, errNoBodyBudget
	}
	return func() { b.sem.Release(n) }, nil
}
