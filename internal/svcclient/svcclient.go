// Package svcclient calls other shoplab services: it finds a passing instance through Consul discovery, balances
// over instances, sets a timeout per attempt, passes the request id on, and retries once on another instance
// by the rule the front's gateway follows too (balancer.Do): only when the called service's registered retry
// policy says the request may be sent twice, or it never reached the first instance.
package svcclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"shoplab/internal/balancer"
	"shoplab/internal/consulx"
	"shoplab/internal/idem"
	"shoplab/internal/mesh"
	"shoplab/internal/netx"
	"shoplab/internal/web"
)

// UnavailableError means no instance of Service could answer.
type UnavailableError struct {
	Service string
	Err     error
}

func (e *UnavailableError) Error() string { return fmt.Sprintf("%s unavailable: %v", e.Service, e.Err) }
func (e *UnavailableError) Unwrap() error { return e.Err }

// RemoteError is a non-2xx answer from another service, with its API.md error body.
type RemoteError struct {
	Service string
	Status  int
	Code    string
	Message string
	Body    []byte      // the whole answer, for callers that read more than the error (a declined payment, say)
	Header  http.Header // the answer's headers (Retry-After, say)
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Service, e.Status, e.Code, e.Message)
}

// Options tunes a client.
type Options struct {
	Timeout        time.Duration // per attempt (default 5s)
	ConnectTimeout time.Duration // default 2s
	Watch          consulx.WatchOptions
}

// Client calls services found in Consul: over mutual TLS with the caller's mesh identity to a Connect-native
// instance (its certificate checked against the service called), in plain HTTP to any other.
type Client struct {
	ctx      context.Context
	consul   *api.Client
	identity *mesh.Identity
	log      hclog.Logger
	plain    *http.Transport
	opts     Options
	budget   *balancer.Budget // retries across every service called: at most a fifth of the calls (10 a second at least)

	mu      sync.Mutex
	targets map[string]*target
}

type target struct {
	watcher *consulx.Watcher
	lb      *balancer.Balancer
	mtls    *http.Transport // verifies that the peer is this service
}

// New returns a client whose watches live until ctx ends; identity is the caller's in the mesh.
func New(ctx context.Context, consul *api.Client, identity *mesh.Identity, log hclog.Logger, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	return &Client{ctx: ctx, consul: consul, identity: identity, log: log.Named("client"), plain: o.transport(nil), opts: o,
		budget: balancer.NewBudget(0.2, 10), targets: map[string]*target{}}
}

// UserTimeout is how long a request sent to an instance may stay unacknowledged before the kernel breaks the
// connection (TCP_USER_TIMEOUT). A kept-alive connection to an instance whose VM was powered off then fails
// with ETIMEDOUT within an attempt's Timeout, the instance is ejected and a safe request goes to another one,
// instead of the attempt timing out on it again and again. The acknowledgement comes from the instance's
// kernel, so a slow handler is not cut off.
const UserTimeout = 3 * time.Second

func (o Options) transport(tlsConfig *tls.Config) *http.Transport {
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second, Control: netx.UserTimeoutControl(UserTimeout)}
	return &http.Transport{
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
	}
}

func (c *Client) target(service string) *target {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.targets[service]; ok {
		return t
	}
	t := &target{watcher: consulx.WatchService(c.ctx, c.consul, service, c.log, c.opts.Watch), lb: balancer.New(balancer.Options{}),
		mtls: c.opts.transport(c.identity.ClientTLS(service))}
	t.watcher.OnChange(t.lb.Update)
	c.targets[service] = t
	return t
}

// Watch starts following service now, so the first call does not wait for discovery.
func (c *Client) Watch(service string) { c.target(service) }

// Request is one call to another service.
type Request struct {
	Method string
	Path   string // with query
	Header http.Header
	Body   []byte
	// Stream: the answer is read for as long as the caller's context allows (a held or streamed answer); the
	// attempt's Timeout bounds only the wait for its headers.
	Stream bool
}

// Do sends req to a passing instance of service. The caller closes the answer's body.
func (c *Client) Do(ctx context.Context, service string, req Request) (*http.Response, error) {
	t := c.target(service)
	if !t.watcher.Answered() { // only the first calls to a service wait for discovery
		waitCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		err := t.watcher.Ready(waitCtx)
		cancel()
		if err != nil {
			return nil, &UnavailableError{Service: service, Err: fmt.Errorf("discovery: %w", err)}
		}
	}
	path, _, _ := strings.Cut(req.Path, "?")
	call := balancer.Call{Method: req.Method, Path: path, Keyed: req.Header.Get(idem.Header) != "", Done: ctx.Done(), Budget: c.budget}
	call.Deadline, _ = ctx.Deadline()
	var resp *http.Response
	res := t.lb.Do(call, func(ep *balancer.Endpoint, _ int) error {
		r, err := c.send(ctx, t, ep, req)
		if err == nil && r.Header.Get(mesh.DeniedHeader) != "" {
			r.Body.Close()
			err = balancer.ErrDenied
		}
		resp = r
		return err
	})
	for _, e := range res.Ejections() {
		c.log.Warn("instance failed; ejected", "service", service, "instance", e.Endpoint.ID, "for", e.For, "error", e.Err)
	}
	err := res.Err
	if balancer.Refused(err) {
		c.log.Warn("call refused by the mesh", "service", service, "caller", c.identity.Service(), "error", err)
		if !errors.Is(err, balancer.ErrDenied) {
			err = fmt.Errorf("%w (%v)", balancer.ErrDenied, err)
		}
	}
	if err != nil {
		return nil, &UnavailableError{Service: service, Err: err}
	}
	return resp, nil
}

func (c *Client) send(ctx context.Context, t *target, ep *balancer.Endpoint, req Request) (*http.Response, error) {
	end := ep.Begin()
	defer end()
	var cancel context.CancelFunc
	if req.Stream {
		ctx, cancel = context.WithCancel(ctx) // the transport's ResponseHeaderTimeout bounds the wait for the headers
	} else {
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
	}
	scheme, tr := "http://", c.plain
	if ep.Native {
		scheme, tr = "https://", t.mtls
		if c.identity.Ready(ctx) != nil {
			// Just started: this service's certificate is on its way from the agent.
			if err := c.identity.Wait(ctx); err != nil {
				cancel()
				return nil, err
			}
		}
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, scheme+ep.HostPort()+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range req.Header {
		hr.Header[k] = v
	}
	if id := web.RequestID(ctx); id != "" {
		hr.Header.Set(web.RequestIDHeader, id)
	}
	resp, err := tr.RoundTrip(hr)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// maxAnswer caps how much of another service's answer is read.
const maxAnswer = 4 << 20

// CallJSON sends in (when not nil) as JSON to service and decodes a 2xx answer into out (when not nil). It
// returns the status; a non-2xx answer is a *RemoteError, an unreachable service an *UnavailableError.
func (c *Client) CallJSON(ctx context.Context, service, method, path string, header http.Header, in, out any) (int, error) {
	req := Request{Method: method, Path: path, Header: http.Header{}}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("encode request to %s: %w", service, err)
		}
		req.Body = body
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(ctx, service, req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, AnswerError(service, resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, &UnavailableError{Service: service, Err: fmt.Errorf("read answer: %w", err)}
	}
	if out != nil && len(body) > 0 {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode answer from %s: %w", service, err)
		}
	}
	return resp.StatusCode, nil
}

// AnswerError reads a non-2xx answer of service into a *RemoteError (an *UnavailableError when it cannot be
// read). The caller closes the body.
func AnswerError(service string, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &UnavailableError{Service: service, Err: fmt.Errorf("read answer: %w", err)}
	}
	re := &RemoteError{Service: service, Status: resp.StatusCode, Body: body, Header: resp.Header}
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		re.Code, re.Message = eb.Error.Code, eb.Error.Message
	}
	return re
}

// IsUnavailable reports whether err means a service could not be reached (map it to 503).
func IsUnavailable(err error) bool {
	var ue *UnavailableError
	return errors.As(err, &ue)
}

// Remote returns the *RemoteError in err's chain, or nil.
func Remote(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		return re
	}
	return nil
}
