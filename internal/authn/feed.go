package authn

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// The revocation feed's protocol, shared by auth (which serves it) and its followers.
const (
	// FeedStreamParam is the question's parameter (=true) that asks auth to stream: heartbeat lines while the
	// question waits, then the answer, as newline-delimited JSON.
	FeedStreamParam = "stream"
	// FeedHeartbeat is how often auth tells a streaming follower that nothing it lacks was revoked: well within
	// a follower's MaxStale, so a follower stays current on heartbeats alone while nothing happens.
	FeedHeartbeat = 400 * time.Millisecond
	// FeedStreamWait is how long a follower's streamed question is held when nothing happens (auth allows 30 s):
	// an idle follower asks about twice a minute.
	FeedStreamWait = 25 * time.Second
)

// Revocation is one revoked session, as auth's revocation feed reports it.
type Revocation struct {
	SessionID string    `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// FeedAnswer is one answer of auth's revocation feed.
type FeedAnswer struct {
	Revocations []Revocation `json:"revocations"`
	More        bool         `json:"more"`       // a full page: ask again at once
	Cursor      string       `json:"cursor"`     // where to ask from next (ordered by commit: nothing is skipped)
	Generation  string       `json:"generation"` // sent back with the next question, once applied
}

// FeedQuestion is one question to auth's revocation feed.
type FeedQuestion struct {
	Cursor string        // where the last answer said to ask from; empty for everything
	Wait   time.Duration // how long auth may wait for the next revocation before answering
	Ack    string        // the generation of the last answer applied; empty on the first question
}

// RevocationFeed asks auth's revocation feed one question. Auth answers at once when a revocation happened since
// the acknowledged generation (or on the first question), otherwise at the next revocation or after Wait;
// meanwhile it calls alive at every heartbeat that vouches for the follower's set.
type RevocationFeed func(ctx context.Context, q FeedQuestion, alive func()) (FeedAnswer, error)

// FeedOptions tunes Follow; the zero value is sensible.
type FeedOptions struct {
	Wait     time.Duration // how long one question waits for news (default FeedStreamWait)
	MaxStale time.Duration // past this without an answer or a heartbeat, verify per request again (default 1s)
}

func (o FeedOptions) withDefaults() FeedOptions {
	if o.Wait <= 0 {
		o.Wait = FeedStreamWait
	}
	if o.MaxStale <= 0 {
		o.MaxStale = time.Second
	}
	return o
}

// Follow keeps the verifier's set of revoked sessions current from feed until ctx ends. While the feed answers
// or sends heartbeats (at least once every MaxStale: auth beats every FeedHeartbeat, and answers at once when a
// session is revoked), Verify checks sessions against this set alone — no call to auth per request. Each
// question acknowledges the answer applied before it, which lets auth's logout wait until its followers have
// the revocation. When the feed goes quiet, Verify goes back to asking auth about each session, so a logout is
// refused everywhere within MaxStale even then.
func (v *Verifier) Follow(ctx context.Context, feed RevocationFeed, o FeedOptions, onError func(error)) {
	o = o.withDefaults()
	v.maxStale.Store(int64(o.MaxStale))
	var q FeedQuestion
	alive := func() { v.feedAnswered.Store(v.now().UnixNano()) }
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		q.Wait = o.Wait
		rctx, cancel := context.WithTimeout(ctx, o.Wait+5*time.Second)
		a, err := feed(rctx, q, alive)
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
		q.Cursor = a.Cursor
		if a.More {
			q.Ack = "" // the next page at once
			continue
		}
		q.Ack = a.Generation
		alive() // current: a whole answer read and applied
	}
}

// feedFresh reports whether the revocation set is known to be current.
func (v *Verifier) feedFresh() bool {
	at, stale := v.feedAnswered.Load(), v.maxStale.Load()
	return at != 0 && stale > 0 && v.now().Sub(time.Unix(0, at)) < time.Duration(stale)
}

// FeedSilence is how long a streamed question may go without a line before the follower gives it up and asks
// again: auth beats every FeedHeartbeat, so a stream that falls silent this long is broken (its host gone, say).
const FeedSilence = 10 * FeedHeartbeat

// maxFeedLine bounds one line of a streamed answer (a page of revocations).
const maxFeedLine = 4 << 20

// ReadFeedStream reads a streamed answer of the feed from r: it calls alive for each heartbeat that vouches, and
// returns the answer that ends the stream. giveUp is called when no line came for FeedSilence (it should end
// the request, so that the read fails).
func ReadFeedStream(r io.Reader, alive func(), giveUp func()) (FeedAnswer, error) {
	silence := time.AfterFunc(FeedSilence, giveUp)
	defer silence.Stop()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxFeedLine)
	for sc.Scan() {
		silence.Reset(FeedSilence)
		var line struct {
			Heartbeat *bool `json:"heartbeat"`
			FeedAnswer
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return FeedAnswer{}, fmt.Errorf("revocation feed: a line that is not JSON: %w", err)
		}
		if line.Heartbeat != nil {
			if *line.Heartbeat {
				alive()
			}
			continue
		}
		if line.Generation == "" {
			return FeedAnswer{}, errors.New("revocation feed: an answer without a generation")
		}
		return line.FeedAnswer, nil
	}
	if err := sc.Err(); err != nil {
		return FeedAnswer{}, fmt.Errorf("revocation feed: %w", err)
	}
	return FeedAnswer{}, errors.New("revocation feed: the stream ended without an answer")
}
