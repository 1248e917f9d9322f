package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
)

type stuckFinder interface {
	// StuckOrders returns up to limit pending orders not touched for at least age, oldest first.
	StuckOrders(ctx context.Context, age time.Duration, limit int) ([]order, error)
}

// recoveryBatch bounds how many orders one round handles.
const recoveryBatch = 50

// runRecovery drives stuck pending orders to a final state: once at start, then every interval, until ctx
// ends. Without the card (it is never stored) the saga closes an unpaid order to charges and releases its stock;
// a paid one is confirmed.
func runRecovery(ctx context.Context, log hclog.Logger, store stuckFinder, s *saga, every, age time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		recoverOnce(ctx, log, store, s, age)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recoverOnce runs one bounded round and reports how many orders it finished and how many stay pending.
func recoverOnce(ctx context.Context, log hclog.Logger, store stuckFinder, s *saga, age time.Duration) (finished, left int) {
	orders, err := store.StuckOrders(ctx, age, recoveryBatch)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("cannot list stuck orders", "error", err)
		}
		return 0, 0
	}
	for _, o := range orders {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
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
		log.Info("recovery round", "finished", finished, "still_pending", left)
	}
	return finished, left
}
