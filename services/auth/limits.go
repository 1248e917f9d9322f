package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/mesh"
	"shoplab/internal/topology"
	"shoplab/internal/web"
)

// limit is "at most max attempts per window".
type limit struct {
	max    int
	window time.Duration
}

func (l limit) String() string { return fmt.Sprintf("%d/%s", l.max, l.window) }

// parseLimit reads "60/1m": at most 60 attempts a minute.
func parseLimit(name, s string) (limit, error) {
	n, w, ok := strings.Cut(strings.TrimSpace(s), "/")
	max, err := strconv.Atoi(n)
	win, werr := time.ParseDuration(w)
	if !ok || err != nil || werr != nil || max < 1 || win < time.Second {
		return limit{}, fmt.Errorf("%s=%q: want attempts/window such as 60/1m (at least 1 attempt, a window of 1s or more)", name, s)
	}
	return limit{max: max, window: win}, nil
}

// limitWindow is one key's attempts in its current window.
type limitWindow struct {
	hits  int
	start time.Time
}

// limitStore keeps the counters where every auth replica sees them: auth's own database.
type limitStore interface {
	LimitState(ctx context.Context, keys []string) (map[string]limitWindow, time.Time, error)
	// Hit counts one attempt against key and returns its window afterwards and the database's clock.
	Hit(ctx context.Context, key string, window time.Duration) (limitWindow, time.Time, error)
	Forget(ctx context.Context, key string) error
	ForgetLimits(ctx context.Context, olderThan time.Duration) (int64, error)
}

// limiter applies API.md's limits on login and registration, so that guessing stays expensive and nobody can
// lock somebody else out:
//   - per client address (AUTH_LIMIT_ADDRESS): every login and registration attempt;
//   - per account and address (AUTH_LIMIT_PAIR): login attempts at one account from one address — a stranger
//     guessing is stopped here, while the owner logs in from an address of their own; the right password clears it;
//   - per account from every address (AUTH_LIMIT_ACCOUNT), a slower ceiling on distributed guessing: only
//     attempts the first two let through count, so one address adds at most AUTH_LIMIT_PAIR to it.
//
// Every attempt is counted before any password is hashed (an atomic increment in the database), so of a burst
// sent at once no more are hashed than the limits allow. Past a limit every attempt is refused with
// errRateLimited until the window ends — even one with the right password. Counters are fixed windows in a
// table of auth's database, so they hold across replicas.
type limiter struct {
	store   limitStore
	address limit           // AUTH_LIMIT_ADDRESS
	pair    limit           // AUTH_LIMIT_PAIR
	account limit           // AUTH_LIMIT_ACCOUNT
	trusted map[string]bool // mesh services whose X-Forwarded-For is believed
}

// rateLimitedError is a refused attempt and when to try again.
type rateLimitedError struct{ retryAfter time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many attempts; try again in %d seconds", e.seconds())
}

func (e *rateLimitedError) seconds() int { return max(1, int(math.Ceil(e.retryAfter.Seconds()))) }

type limitKey struct {
	key string
	limit
}

func (l *limiter) addressKey(addr string) limitKey  { return limitKey{"addr:" + addr, l.address} }
func (l *limiter) accountKey(email string) limitKey { return limitKey{"acct:" + email, l.account} }
func (l *limiter) pairKey(email, addr string) limitKey {
	return limitKey{"pair:" + email + "|" + addr, l.pair}
}

// takeLogin counts a login attempt before any hashing: against the client's address and the account from that
// address, and only when neither is over its limit against the account's ceiling.
func (l *limiter) takeLogin(ctx context.Context, addr, email string) error {
	if err := l.take(ctx, l.addressKey(addr), l.pairKey(email, addr)); err != nil {
		return err
	}
	return l.take(ctx, l.accountKey(email))
}

// loggedIn forgets the attempts at the account from addr once the right password came from there: its owner's
// own typos do not add up.
func (l *limiter) loggedIn(ctx context.Context, addr, email string) error {
	return l.store.Forget(ctx, l.pairKey(email, addr).key)
}

// takeRegistration refuses a registration for an email whose account is over its ceiling (probing which
// emails exist counts there), then counts it against the client's address before any hashing.
func (l *limiter) takeRegistration(ctx context.Context, addr, email string) error {
	if err := l.check(ctx, l.accountKey(email)); err != nil {
		return err
	}
	return l.take(ctx, l.addressKey(addr))
}

// take counts one attempt against each key and refuses it when one of them is now over its limit.
func (l *limiter) take(ctx context.Context, keys ...limitKey) error {
	var wait time.Duration
	for _, k := range keys {
		w, now, err := l.store.Hit(ctx, k.key, k.window)
		if err != nil {
			return err
		}
		if w.hits > k.max {
			wait = max(wait, w.start.Add(k.window).Sub(now))
		}
	}
	if wait > 0 {
		return &rateLimitedError{retryAfter: wait}
	}
	return nil
}

// check refuses an attempt when one of the keys is at its limit already, without counting it.
func (l *limiter) check(ctx context.Context, keys ...limitKey) error {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.key
	}
	state, now, err := l.store.LimitState(ctx, names)
	if err != nil {
		return err
	}
	var wait time.Duration
	for _, k := range keys {
		w, ok := state[k.key]
		end := w.start.Add(k.window)
		if ok && w.hits >= k.max && end.After(now) {
			wait = max(wait, end.Sub(now))
		}
	}
	if wait > 0 {
		return &rateLimitedError{retryAfter: wait}
	}
	return nil
}

// hitAccount counts a registration of an email that has an account against that account's ceiling.
func (l *limiter) hitAccount(ctx context.Context, email string) error {
	_, _, err := l.store.Hit(ctx, l.accountKey(email).key, l.account.window)
	return err
}

// janitor deletes ended windows every interval until ctx ends, so the table stays small.
func (l *limiter) janitor(ctx context.Context, log hclog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := l.store.ForgetLimits(ctx, max(l.address.window, l.pair.window, l.account.window))
		if err != nil && ctx.Err() == nil {
			log.Warn("cannot forget old rate-limit windows", "error", err)
		} else if n > 0 {
			log.Debug("forgot old rate-limit windows", "rows", n)
		}
	}
}

// defaultTrusted is AUTH_TRUSTED_CALLERS' default: the topology's entry (the front) when it calls auth, the one
// service that passes on the address of the client it serves; none otherwise.
func defaultTrusted(t *topology.Topology) string {
	if slices.Contains(t.Callers("auth"), topology.Entry) {
		return topology.Entry
	}
	return ""
}

// parseTrusted reads AUTH_TRUSTED_CALLERS: the mesh services whose X-Forwarded-For is believed — the front,
// which sets it to the address of the client it serves.
func parseTrusted(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !serviceNameRe.MatchString(part) {
			return nil, fmt.Errorf("AUTH_TRUSTED_CALLERS: %q is not a service name", part)
		}
		out[part] = true
	}
	return out, nil
}

var serviceNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// clientAddr is the address the limits apply to: the peer's own address, unless the peer is a trusted mesh
// service (the front, proven by its certificate), whose X-Forwarded-For names the client. From a trusted caller
// that header is exactly one address in exactly one header line, as the front writes it: two lines, a list or
// anything but an IP address is a 400 (the front removes whatever its client sent, so only a caller that
// does not behave like the front sends one), never a guess at which value to believe. Without the header the
// peer's own address counts.
func (l *limiter) clientAddr(r *http.Request) (string, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host, nil
	}
	peer = peer.Unmap()
	if !l.trusted[mesh.Caller(r)] {
		return peer.String(), nil
	}
	xff := r.Header.Values("X-Forwarded-For")
	switch {
	case len(xff) == 0:
		return peer.String(), nil
	case len(xff) > 1:
		return "", web.BadRequest("X-Forwarded-For must be one header naming one address; got %d headers", len(xff))
	}
	a, err := netip.ParseAddr(strings.TrimSpace(xff[0]))
	if err != nil {
		return "", web.BadRequest("X-Forwarded-For must name one IP address")
	}
	return a.Unmap().String(), nil
}
