package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
)

type stuckFinder interface {
	// ClaimStuck claims up to limit unfinished orders not touched for at least age, for lease (doubling with
	// each attempt), oldest first.
	ClaimStuck(ctx context.Context, age, lease time.Duration, limit int) ([]order, error)
}

// recoveryBatch bounds how many orders one round handles.
const recoveryBatch = 50

// recovery is the worker's schedule: how often it looks, how old an untouched order must be, and how long
// a claim lasts before another replica may take the order (doubling after each failed attempt).
type recovery struct {
	every, age, lease time.Duration
}

// runRecovery drives stuck orders to a final state: once at start, then every interval, until ctx ends.
// Without the card (it is never stored) the saga closes an unpaid order to charges and releases its stock;
// a paid one is confirmed; a cancellation is finished.
func runRecovery(ctx context.Context, log hclog.Logger, store stuckFinder, s *saga, rc recovery) {
	t := time.NewTicker(rc.every)
	defer t.Stop()
	for {
		recoverOnce(ctx, log, store, s, rc)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recoverOnce runs one bounded round and reports how many orders it finished and how many stay unfinished.
func recoverOnce(ctx context.Context, log hclog.Logger, store stuckFinder, s *saga, rc recovery) (finished, left int) {
	orders, err := store.ClaimStuck(ctx, rc.age, rc.lease, recoveryBatch)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot list stuck orders", "error", err)
		}
		return 0, 0
	}
	for _, o := range orders {
		octx, cancel := context.WithTimeout(ctx, rc.lease) // within its claim
		got, err := s.drive(octx, o, nil)
		cancel()
		if err != nil {
			left++
			continue
		}
		finished++
		log.Info("recovered order", "order_id", got.ID, "from_step", o.Step, "status", got.Status)
	}
	if len(orders) > 0 {
		log.Info("recovery round", "finished", finished, "still_unfinished", left)
	}
	return finished, left
}
