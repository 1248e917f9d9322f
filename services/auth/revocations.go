package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/lib/pq"

	"shoplab/internal/authn"
	"shoplab/internal/ids"
	"shoplab/internal/pgdb"
	"shoplab/internal/web"
)

// revocationChannel is the PostgreSQL NOTIFY channel the revocations trigger signals on.
const revocationChannel = "shoplab_revocations"

// feed is the state behind the revocation feed. Its generation counts wake-ups: one for every revocation
// committed by any auth replica (a NOTIFY on the database, through lib/pq's Listener, which reconnects by itself
// — and one for each reconnection, since notifications may have been missed meanwhile) and one for every
// logout made here. Each answer carries the generation it was read at; a follower sends it back with its next
// question, which both acknowledges that it applied the answer and tells whether something happened since.
//
// A follower that is up to date can stream (authn.FeedStreamParam): its question is then held open, with a
// heartbeat line every authn.FeedHeartbeat — "nothing was revoked that you lack" — until something is, or its
// wait passes, and ends with the answer. An idle lab then costs a question per follower every
// authn.FeedStreamWait and a few bytes per heartbeat, where it cost a question, an intention check and a
// database read per follower twice a second. Heartbeats vouch only while the database's notifications arrive
// (listening): without them a revocation made by another replica, or by the operator's command, could go
// unnoticed here, and the followers' trust lapses instead (authn's MaxStale).
type feed struct {
	epoch     string // this process's generations; a follower that switched replicas starts afresh
	listening atomic.Bool

	mu        sync.Mutex
	gen       uint64
	woken     chan struct{} // closed, and replaced, on each wake-up
	acked     chan struct{} // closed, and replaced, on each acknowledgement
	followers map[string]*follower
	held      int           // streamed questions held open now
	beat      chan struct{} // closed, and replaced, on each heartbeat
	beating   bool          // the heartbeat's ticker runs (while questions are held)
}

// follower is what the feed knows of one follower.
type follower struct {
	ack     uint64    // the generation of the last answer it applied
	seen    time.Time // when it last asked, or its last held question ended
	streams int       // its questions held open now
}

// active reports whether a logout waits for the follower: it streams now, or asked lately.
func (fl *follower) active(now time.Time) bool {
	return fl.streams > 0 || now.Sub(fl.seen) < followerActive
}

// followerActive is how recently a follower that does not stream must have asked to be waited for when a
// session is revoked.
const followerActive = 3 * time.Second

func newFeed() *feed {
	return &feed{epoch: ids.New("feed"), woken: make(chan struct{}), acked: make(chan struct{}), beat: make(chan struct{}),
		followers: map[string]*follower{}}
}

// listenPing is how often the notification connection is checked while nothing arrives on it: a connection to a
// database host that died is noticed within this plus pgdb's user timeout, and heartbeats stop meanwhile.
const listenPing = 5 * time.Second

// listen wakes the feed on every revocation notification until ctx ends, over a connection made with pgdb's
// dialer (user timeout and keepalive). listening is true while that connection is up; each reconnection wakes
// the feed, since notifications may have been missed meanwhile.
func (f *feed) listen(ctx context.Context, dsn string, log hclog.Logger) {
	l := pq.NewDialListener(pgdb.Dialer(), dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventConnected, pq.ListenerEventReconnected:
			f.listening.Store(true)
		case pq.ListenerEventDisconnected, pq.ListenerEventConnectionAttemptFailed:
			f.listening.Store(false)
		}
		if err != nil {
			log.Warn("revocation notifications interrupted; the feed sends no heartbeats meanwhile", "error", err)
		}
	})
	if err := l.Listen(revocationChannel); err != nil {
		log.Warn("cannot listen for revocations yet; the listener keeps trying", "error", err)
	}
	go func() {
		defer l.Close()
		ping := time.NewTimer(listenPing)
		defer ping.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-l.Notify: // nil after a reconnection
				f.wake()
			case <-ping.C:
				if err := l.Ping(); err != nil {
					f.listening.Store(false)
				}
			}
			ping.Reset(listenPing)
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
					if o.streams == 0 && now.Sub(o.seen) > time.Minute {
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

// hold marks a streamed question of follower id (which may be "") as held open, starts the heartbeat if it
// was not running, and returns the current beat channel and the function that ends the hold.
func (f *feed) hold(id string) (beat <-chan struct{}, release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held++
	if fl := f.followers[id]; fl != nil {
		fl.streams++
	}
	if !f.beating {
		f.beating = true
		go f.tick()
	}
	return f.beat, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.held--
		if fl := f.followers[id]; fl != nil {
			fl.streams--
			fl.seen = time.Now()
		}
	}
}

// nextBeat is the channel the next heartbeat closes.
func (f *feed) nextBeat() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.beat
}

// tick closes the beat channel every authn.FeedHeartbeat, one ticker for every held question — each follower
// told at the same moment, one wake-up of this process for all of them — and stops when none is held.
func (f *feed) tick() {
	t := time.NewTicker(authn.FeedHeartbeat)
	defer t.Stop()
	for range t.C {
		f.mu.Lock()
		if f.held == 0 {
			f.beating = false
			f.mu.Unlock()
			return
		}
		close(f.beat)
		f.beat = make(chan struct{})
		f.mu.Unlock()
	}
}

// settle wakes every follower and waits, at most limit, until each active one (streaming, or asked lately) has
// acknowledged an answer read after this call began — so a session revoked before it is refused by every
// follower once it returns. It reports whether they all did.
func (f *feed) settle(ctx context.Context, limit time.Duration) bool {
	gen := f.wake()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		f.mu.Lock()
		pending, now := false, time.Now()
		for _, fl := range f.followers {
			if fl.ack < gen && fl.active(now) {
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

func (f *feed) current() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

// feedCursor is where a follower of the revocation feed is: every revocation made by a transaction before XID,
// and those of XID itself up to Seq, were given to it. It is ordered by commit, not by clock (postgres.go's
// Revocations never hands out a cursor past a transaction that was still running), so a revocation whose
// transaction commits late is still ahead of every cursor handed out before its commit.
type feedCursor struct {
	XID uint64
	Seq int64
}

// String is the cursor as the feed writes it: "xid.seq".
func (c feedCursor) String() string {
	return strconv.FormatUint(c.XID, 10) + "." + strconv.FormatInt(c.Seq, 10)
}

// parseFeedCursor reads a cursor the feed wrote; "" is the start of the feed.
func parseFeedCursor(s string) (feedCursor, error) {
	if s == "" {
		return feedCursor{}, nil
	}
	x, q, ok := strings.Cut(s, ".")
	xid, err1 := strconv.ParseUint(x, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || seq < 0 {
		return feedCursor{}, errors.New("not a cursor of this feed")
	}
	return feedCursor{XID: xid, Seq: seq}, nil
}

type revocationReader interface {
	Revocations(ctx context.Context, after feedCursor, limit int) (revs []revocation, next feedCursor, more bool, err error)
}

// feedPage bounds one answer of the feed; a full page says more follow.
const feedPage = 1000

// settleLimit bounds how long a logout waits for the feed's followers: past it, a follower that has not
// acknowledged stops trusting its set anyway (authn's MaxStale).
const settleLimit = time.Second

// maxFeedWait bounds how long a question that does not stream waits for news; maxStreamWait one that streams
// (below the server's write timeout, 60 s).
const (
	maxFeedWait   = 10 * time.Second
	maxStreamWait = 30 * time.Second
)

// validFollower accepts the ids followers name themselves with.
var validFollower = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// heartbeatLine is what a streamed question is sent at each beat while nothing new was revoked; mutedLine while
// the database's notifications do not arrive: the stream lives on (authn.FeedSilence) but vouches for nothing.
var (
	heartbeatLine = []byte(`{"heartbeat":true}` + "\n")
	mutedLine     = []byte(`{"heartbeat":false}` + "\n")
)

// handleRevocations is the internal revocation feed that other services' verifiers follow:
// GET /internal/v1/revocations?cursor=<c>&wait=<duration>&follower=<id>&ack=<generation>&stream=true answers
// the revocations after cursor (as a previous answer gave it; none for all) whose tokens have not expired, the
// cursor to ask with next, and the generation they were read at. A question that acknowledges the current
// generation waits up to wait for the next revocation; any other is answered at once. With stream=true the
// answer is newline-delimited JSON: heartbeat lines ({"heartbeat":true}, or false while the feed cannot vouch)
// while the question waits, then the answer. Revoking is idempotent, so answering a revocation twice is harmless.
func handleRevocations(log hclog.Logger, store revocationReader, f *feed) http.Handler {
	type answer struct {
		Revocations []revocation `json:"revocations"`
		More        bool         `json:"more"`   // a full page: ask again at once
		Cursor      string       `json:"cursor"` // to ask with next
		Generation  string       `json:"generation"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := web.Query(r)
		if err != nil {
			writeError(w, r, log, err)
			return
		}
		cursor, err := parseFeedCursor(q.Get("cursor"))
		if err != nil {
			writeError(w, r, log, web.BadRequest("cursor must be one this feed gave"))
			return
		}
		var stream bool
		switch q.Get(authn.FeedStreamParam) {
		case "", "false":
		case "true":
			stream = true
		default:
			writeError(w, r, log, web.BadRequest("%s must be true or false", authn.FeedStreamParam))
			return
		}
		limit := maxFeedWait
		if stream {
			limit = maxStreamWait
		}
		var wait time.Duration
		if v := q.Get("wait"); v != "" {
			if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > limit {
				writeError(w, r, log, web.BadRequest("wait must be a duration from 0s to %s", limit))
				return
			}
		}
		id := q.Get("follower")
		if id != "" && !validFollower.MatchString(id) {
			writeError(w, r, log, web.BadRequest("follower must be 1 to 64 letters, digits, '.', '_' or '-'"))
			return
		}
		gen, missed, woken := f.ask(id, q.Get("ack"))
		if stream {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_ = http.NewResponseController(w).Flush() // the follower knows at once that its question is held
		}
		if !missed && wait > 0 {
			var ok bool
			if gen, ok = f.await(r.Context(), w, id, woken, wait, stream); !ok {
				return // the follower went away, or its stream broke
			}
		}
		// gen was taken before the read: whatever was committed before that generation began is in it.
		revs, next, more, err := store.Revocations(r.Context(), cursor, feedPage)
		if err != nil {
			if stream { // the status is sent: the follower sees the stream end without an answer
				log.Named("revocations").Warn("reading revocations failed", "error", err)
				return
			}
			writeError(w, r, log, err)
			return
		}
		if revs == nil {
			revs = []revocation{}
		}
		a := answer{Revocations: revs, More: more, Cursor: next.String(), Generation: f.epoch + "." + strconv.FormatUint(gen, 10)}
		if !stream {
			web.WriteJSON(w, http.StatusOK, a)
			return
		}
		_ = json.NewEncoder(w).Encode(a)
	})
}

// await holds a question until the next wake-up (returning that generation) or until wait passes (returning
// the question's own). A streamed question meanwhile gets a heartbeat line at each beat, as long as the
// database's notifications arrive. It reports false when the question cannot be answered any more.
func (f *feed) await(ctx context.Context, w http.ResponseWriter, id string, woken <-chan struct{}, wait time.Duration, stream bool) (uint64, bool) {
	gen := f.current()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var beat <-chan struct{}
	if stream {
		var release func()
		beat, release = f.hold(id)
		defer release()
	}
	rc := http.NewResponseController(w)
	for {
		select {
		case <-woken:
			return f.current(), true
		case <-timer.C:
			return gen, true
		case <-ctx.Done():
			return 0, false
		case <-beat:
			beat = f.nextBeat()
			select {
			case <-woken: // news first: never a heartbeat over a revocation not yet sent
				return f.current(), true
			default:
			}
			line := heartbeatLine
			if !f.listening.Load() {
				line = mutedLine // nothing to vouch for: the follower's trust lapses until notifications arrive again
			}
			if _, err := w.Write(line); err != nil {
				return 0, false
			}
			if err := rc.Flush(); err != nil {
				return 0, false
			}
		}
	}
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
