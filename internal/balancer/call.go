package balancer

import (
	"sync/atomic"
	"time"
)

// Call is one request to a service, as both clients of another service send it: the front's gateway and
// svcclient. Do is the one attempt loop, so "when is a call retried?" has one answer.
type Call struct {
	// Method, Path (without the query) and Keyed (the request carries an Idempotency-Key) are matched against
	// the retry policy the callee registered in Consul (consulx.RetryPolicy): the service that implements a
	// guarantee is the one that states it.
	Method string
	Path   string
	Keyed  bool
	Done   <-chan struct{} // the caller's context's: once closed nothing is tried again (nil: never)
	// Deadline is the whole call's, retries included (zero: none); Start when the call began (zero: now).
	Deadline time.Time
	Start    time.Time
	Budget   *Budget // nil: retries are not budgeted
}

// MinAttempt is the least time left before the call's deadline for another attempt to be worth sending.
const MinAttempt = 500 * time.Millisecond

// maxAttempts: a call goes to at most two instances.
const maxAttempts = 2

// Result is how a call went.
type Result struct {
	Answered *Endpoint // the instance that answered; nil when none did
	Err      error     // when none answered, the last failure (ErrNoInstances when there was none to try)
	Retries  int
	// Ejected are the instances taken out of rotation by this call (for logs and metrics).
	Ejected [maxAttempts]Ejection
}

// Ejection is one instance ejected by a call: for how long, after what failure.
type Ejection struct {
	Endpoint *Endpoint
	For      time.Duration
	Err      error
}

// Ejections returns the instances the call ejected.
func (r *Result) Ejections() []Ejection {
	n := 0
	for n < len(r.Ejected) && r.Ejected[n].Endpoint != nil {
		n++
	}
	return r.Ejected[:n]
}

// Do sends the call with send to an instance (Pick), and once more to another one when
//   - the request never reached the first (NotSent), or the callee's policy says it may be sent twice;
//   - the mesh did not refuse it (Refused: an intention is about the service; nothing is ejected or retried);
//   - the caller has not given up (Done), MinAttempt is left before the deadline, and the budget allows.
//
// An instance whose connection failed (ConnFailure) is ejected whatever happens next; one that answered is
// marked so (Succeeded). send is given the instance and the attempt (0, 1) and returns nil once it has an
// answer of any status.
func (b *Balancer) Do(c Call, send func(ep *Endpoint, attempt int) error) Result {
	if c.Budget != nil {
		start := c.Start
		if start.IsZero() {
			start = time.Now()
		}
		c.Budget.request(start)
	}
	var (
		r         Result
		tried     [maxAttempts]*Endpoint
		retryable bool
		ejected   int
	)
	for attempt := 0; ; attempt++ {
		ep, err := b.Pick(tried[:attempt]...)
		if err != nil {
			if r.Err == nil {
				r.Err = err
			}
			break
		}
		if attempt == 0 {
			retryable = ep.Retry.Allows(c.Method, c.Path, c.Keyed)
		} else {
			if c.Budget != nil && !c.Budget.allowRetry() {
				break
			}
			r.Retries++
		}
		tried[attempt] = ep
		if r.Err = send(ep, attempt); r.Err == nil {
			b.Succeeded(ep)
			r.Answered = ep
			return r
		}
		if Refused(r.Err) {
			break
		}
		if ConnFailure(r.Err) {
			r.Ejected[ejected] = Ejection{Endpoint: ep, For: b.Eject(ep), Err: r.Err}
			ejected++
		}
		if attempt+1 == maxAttempts || (!retryable && !NotSent(r.Err)) || given(c.Done) ||
			(!c.Deadline.IsZero() && time.Until(c.Deadline) < MinAttempt) {
			break
		}
	}
	return r
}

// given reports whether done is closed.
func given(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Budget allows retries up to a ratio of the calls of the current second, and at least minPerSec, so a failing
// service is not hit with twice its load. It is lock-free and holds no pointers (the hot path only adds to
// counters, and a Call that carries it stays on its caller's stack); at the turn of a second the counters
// restart, a few calls either side counted in the other second.
type Budget struct {
	ratio     float64
	minPerSec int64

	sec      atomic.Int64 // the unix second counted
	requests atomic.Int64
	retries  atomic.Int64
}

// NewBudget allows ratio retries per call (0.2: one in five), and at least minPerSec a second.
func NewBudget(ratio float64, minPerSec int) *Budget {
	b := &Budget{ratio: ratio, minPerSec: int64(minPerSec)}
	b.sec.Store(time.Now().Unix())
	return b
}

// turn restarts the counters when t is in a later second than the one counted.
func (b *Budget) turn(t time.Time) {
	now, sec := t.Unix(), b.sec.Load()
	if now > sec && b.sec.CompareAndSwap(sec, now) {
		b.requests.Store(0)
		b.retries.Store(0)
	}
}

// request counts a call that began at now.
func (b *Budget) request(now time.Time) {
	b.turn(now)
	b.requests.Add(1)
}

// allowRetry reports whether one more retry fits in the budget of the current second, and counts it if so.
func (b *Budget) allowRetry() bool {
	b.turn(time.Now())
	limit := max(b.minPerSec, int64(b.ratio*float64(b.requests.Load())))
	if b.retries.Add(1) > limit {
		b.retries.Add(-1)
		return false
	}
	return true
}
