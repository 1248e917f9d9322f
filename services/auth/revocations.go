package main

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/lib/pq"

	"shoplab/internal/ids"
	"shoplab/internal/web"
)

// revocationChannel is the PostgreSQL NOTIFY channel the revocations trigger signals on.
const revocationChannel = "shoplab_revocations"

// feed is the state behind the revocation feed. Its generation counts wake-ups: one for every revocation
// committed by any auth replica (a NOTIFY on the database, through lib/pq's Listener, which reconnects by itself
// — and one for each reconnection, since notifications may have been missed meanwhile) and one for every
// logout made here. Each answer carries the generation it was read at; a follower sends it back with its next
// question, which both acknowledges that it applied the answer and tells whether something happened since.
type feed struct {
	epoch string // this process's generations; a follower that switched replicas starts afresh

	mu        sync.Mutex
	gen       uint64
	woken     chan struct{} // closed, and replaced, on each wake-up
	acked     chan struct{} // closed, and replaced, on each acknowledgement
	followers map[string]*follower
}

// follower is what the feed knows of one follower.
type follower struct {
	ack  uint64    // the generation of the last answer it applied
	seen time.Time // when it last asked
}

// followerActive is how recently a follower must have asked to be waited for when a session is revoked
// (authn's followers ask again at least every half second).
const followerActive = 3 * time.Second

func newFeed() *feed {
	return &feed{epoch: ids.New("feed"), woken: make(chan struct{}), acked: make(chan struct{}), followers: map[string]*follower{}}
}

// listen wakes the feed on every revocation notification until ctx ends.
func (f *feed) listen(ctx context.Context, dsn string, log hclog.Logger) {
	l := pq.NewListener(dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn("revocation notifications interrupted; followers poll meanwhile", "error", err)
		}
	})
	if err := l.Listen(revocationChannel); err != nil {
		log.Warn("cannot listen for revocations yet; the listener keeps trying", "error", err)
	}
	go func() {
		defer l.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.Notify: // nil after a reconnection
				f.wake()
			case <-time.After(90 * time.Second):
				_ = l.Ping()
			}
		}
	}()
}

// wake starts a new generation: every waiting follower reads again and answers.
func (f *feed) wake() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	close(f.woken)
	f.woken = make(chan struct{})
	return f.gen
}

// ask records a follower's question; it returns the current generation, whether the follower has missed one
// (its last applied answer is older, or from another process), and the channel the next wake-up closes.
func (f *feed) ask(id, ack string) (gen uint64, missed bool, woken <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	applied, known := uint64(0), false
	if epoch, n, ok := strings.Cut(ack, "."); ok && epoch == f.epoch {
		if v, err := strconv.ParseUint(n, 10, 64); err == nil && v <= f.gen {
			applied, known = v, true
		}
	}
	if id != "" {
		now := time.Now()
		fl := f.followers[id]
		if fl == nil {
			if len(f.followers) > 1000 { // forget the long gone before growing further
				for k, o := range f.followers {
					if now.Sub(o.seen) > time.Minute {
						delete(f.followers, k)
					}
				}
			}
			fl = &follower{}
			f.followers[id] = fl
		}
		fl.seen = now
		if known && applied > fl.ack {
			fl.ack = applied
			close(f.acked)
			f.acked = make(chan struct{})
		}
	}
	return f.gen, !known || applied < f.gen, f.woken
}

// settle wakes every follower and waits, at most limit, until each one that asked lately has acknowledged an
// answer read after this call began — so a session revoked before it is refused by every follower once it
// returns. It reports whether they all did.
func (f *feed) settle(ctx context.Context, limit time.Duration) bool {
	gen := f.wake()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		f.mu.Lock()
		pending, now := false, time.Now()
		for _, fl := range f.followers {
			if fl.ack < gen && now.Sub(fl.seen) < followerActive {
				pending = true
				break
			}
		}
		acked := f.acked
		f.mu.Unlock()
		if !pending {
			return true
		}
		select {
		case <-acked:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

type revocationReader interface {
	Revocations(ctx context.Context, since time.Time, limit int) ([]revocation, time.Time, error)
}

// feedPage bounds one answer of the feed; a full page says more follow.
const feedPage = 1000

// settleLimit bounds how long a logout waits for the feed's followers: past it, a follower that has not
// acknowledged stops trusting its set anyway (authn's MaxStale).
const settleLimit = time.Second

// maxFeedWait bounds how long a follower's request waits for news.
const maxFeedWait = 10 * time.Second

// validFollower accepts the ids followers name themselves with.
var validFollower = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// handleRevocations is the internal revocation feed that other services' verifiers follow:
// GET /internal/v1/revocations?since=<µs>&wait=<duration>&follower=<id>&ack=<generation> answers the
// revocations made after since (unix microseconds, on the database's clock) whose tokens have not expired,
// oldest first, with as_of (the database's clock when they were read: the follower's next since, less an
// overlap for revocations that commit late) and the generation they were read at. A question that
// acknowledges the current generation waits up to wait for the next revocation; any other is answered at once.
// Revoking is idempotent, so answering a revocation twice is harmless.
func handleRevocations(log hclog.Logger, store revocationReader, f *feed) http.Handler {
	type answer struct {
		Revocations []revocation `json:"revocations"`
		More        bool         `json:"more"`  // a full page: ask again at once
		AsOf        time.Time    `json:"as_of"` // the database's clock when they were read
		Generation  string       `json:"generation"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := web.Query(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		var since time.Time
		if v := q.Get("since"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				writeError(w, r, log, web.BadRequest("since must be unix microseconds"))
				return
			}
			since = time.UnixMicro(n)
		}
		var wait time.Duration
		if v := q.Get("wait"); v != "" {
			if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > maxFeedWait {
				writeError(w, r, log, web.BadRequest("wait must be a duration from 0s to %s", maxFeedWait))
				return
			}
		}
		id := q.Get("follower")
		if id != "" && !validFollower.MatchString(id) {
			writeError(w, r, log, web.BadRequest("follower must be 1 to 64 letters, digits, '.', '_' or '-'"))
			return
		}
		gen, missed, woken := f.ask(id, q.Get("ack"))
		if !missed && wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-woken:
				gen = f.current()
			case <-timer.C:
			case <-r.Context().Done():
				timer.Stop()
				return
			}
			timer.Stop()
		}
		// gen was taken before the read: whatever was committed before that generation began is in it.
		revs, asOf, err := store.Revocations(r.Context(), since, feedPage)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		if revs == nil {
			revs = []revocation{}
		}
		web.WriteJSON(w, http.StatusOK, answer{
			Revocations: revs, More: len(revs) == feedPage, AsOf: asOf,
			Generation: f.epoch + "." + strconv.FormatUint(gen, 10),
		})
	})
}

func (f *feed) current() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

// forgetRevocations deletes, every interval, revocations whose tokens expired an hour ago.
func forgetRevocations(ctx context.Context, log hclog.Logger, store interface {
	ForgetRevocations(ctx context.Context, grace time.Duration) (int64, error)
}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := store.ForgetRevocations(ctx, time.Hour); err != nil && ctx.Err() == nil {
			log.Warn("cannot forget old revocations", "error", err)
		}
	}
}
