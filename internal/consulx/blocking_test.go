package consulx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// TestBlockingIndexRules checks the index handling Consul asks of blocking-query clients.
func TestBlockingIndexRules(t *testing.T) {
	answers := []uint64{5, 3, 0, 7, 7}
	var sent []uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := newLoopState()
	calls := 0
	runBlocking(ctx, WatchOptions{MinGap: time.Millisecond}.withDefaults(), st, hclog.NewNullLogger(), func(_ context.Context, o *api.QueryOptions) (uint64, error) {
		sent = append(sent, o.WaitIndex)
		if !o.AllowStale || o.WaitTime <= 0 {
			t.Errorf("query options: got %+v; want AllowStale and a WaitTime", o)
		}
		calls++
		if calls == len(answers) {
			cancel()
		}
		return answers[calls-1], nil
	})
	// 0 first; 5 as answered; 3 < 5 went backwards → 0; an answer of 0 → 1 (never 0 again); then 7.
	want := []uint64{0, 5, 0, 1, 7}
	if len(sent) != len(want) {
		t.Fatalf("sent %v; want %v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("sent %v; want %v", sent, want)
		}
	}
}

// TestBlockingBackoff checks that errors back off (capped) rather than spin, and that state is reported.
func TestBlockingBackoff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	st := newLoopState()
	calls := 0
	runBlocking(ctx, WatchOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}.withDefaults(), st, hclog.NewNullLogger(),
		func(context.Context, *api.QueryOptions) (uint64, error) {
			calls++
			return 0, errors.New("connection refused")
		})
	// With 25–50 ms, then 50–100 ms waits, 600 ms allows roughly 6–14 calls; a spin would make thousands.
	if calls < 3 || calls > 20 {
		t.Fatalf("calls in 600ms of errors: got %d; want a bounded, backed-off number (3..20)", calls)
	}
	if h := st.health(); h.Connected || h.LastError == "" {
		t.Fatalf("health: got %+v; want disconnected with the error", h)
	}
}
