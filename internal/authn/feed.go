package authn

import (
	"context"
	"time"
)

// Revocation is one revoked session, as auth's revocation feed reports it.
type Revocation struct {
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at"`
}

// FeedAnswer is one answer of auth's revocation feed.
type FeedAnswer struct {
	Revocations []Revocation `json:"revocations"`
	More        bool         `json:"more"`       // a full page: ask again at once
	AsOf        time.Time    `json:"as_of"`      // auth's database clock when they were read
	Generation  string       `json:"generation"` // sent back with the next question, once applied
}

// FeedQuestion is one question to auth's revocation feed.
type FeedQuestion struct {
	Since time.Time     // the revocations made after this (on auth's database clock); zero for all
	Wait  time.Duration // how long auth may wait for the next revocation before answering
	Ack   string        // the generation of the last answer applied; empty on the first question
}

// RevocationFeed asks auth's revocation feed one question. Auth answers at once when a revocation happened
// since the acknowledged generation (or on the first question), otherwise at the next revocation or after Wait.
type RevocationFeed func(ctx context.Context, q FeedQuestion) (FeedAnswer, error)

// FeedOptions tunes Follow; the zero value is sensible.
type FeedOptions struct {
	Wait     time.Duration // how long one request waits for news (default 500ms)
	MaxStale time.Duration // past this without an answer, verify per request again (default 1s)
	Overlap  time.Duration // how far back each request looks again, for revocations committed late (default 2s)
}

func (o FeedOptions) withDefaults() FeedOptions {
	if o.Wait <= 0 {
		o.Wait = 500 * time.Millisecond
	}
	if o.MaxStale <= 0 {
		o.MaxStale = time.Second
	}
	if o.Overlap <= 0 {
		o.Overlap = 2 * time.Second
	}
	return o
}

// Follow keeps the verifier's set of revoked sessions current from feed until ctx ends. While the feed answers
// (at least once every MaxStale: each request waits at most Wait, and auth answers at once when a session is
// revoked), Verify checks sessions against this set alone — no call to auth per request. Each question
// acknowledges the answer applied before it, which lets auth's logout wait until its followers have the
// revocation. When the feed stops answering, Verify goes back to asking auth about each session, so a logout
// is refused everywhere within MaxStale even then.
func (v *Verifier) Follow(ctx context.Context, feed RevocationFeed, o FeedOptions, onError func(error)) {
	o = o.withDefaults()
	v.maxStale.Store(int64(o.MaxStale))
	var q FeedQuestion
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		q.Wait = o.Wait
		rctx, cancel := context.WithTimeout(ctx, o.Wait+5*time.Second)
		a, err := feed(rctx, q)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if onError != nil {
				onError(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, r := range a.Revocations {
			v.markRevoked(r.SessionID, r.ExpiresAt)
		}
		if a.More && len(a.Revocations) > 0 {
			q.Since = a.Revocations[len(a.Revocations)-1].RevokedAt
			q.Ack = "" // the next page at once
			continue
		}
		if !a.AsOf.IsZero() {
			q.Since = a.AsOf.Add(-o.Overlap) // look again at the last moments: a revocation may commit late
		}
		q.Ack = a.Generation
		v.feedAnswered.Store(v.now().UnixNano()) // current: a whole answer read and applied
	}
}

// feedFresh reports whether the revocation set is known to be current.
func (v *Verifier) feedFresh() bool {
	at, stale := v.feedAnswered.Load(), v.maxStale.Load()
	return at != 0 && stale > 0 && v.now().Sub(time.Unix(0, at)) < time.Duration(stale)
}
