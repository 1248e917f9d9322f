package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/card"
)

// Saga steps (orders.step) and statuses (orders.status).
const (
	stepCreated  = "created"
	stepReserved = "reserved"
	stepCharged  = "charged"
	stepDeclined = "declined"
	stepDone     = "done"
	// Cancelling a confirmed order: refund, then give the stock back.
	stepCancelling = "cancelling"
	stepRefunded   = "refunded"

	statusPending       = "pending"
	statusConfirmed     = "confirmed"
	statusPaymentFailed = "payment_failed"
	statusRejected      = "rejected"
	statusCancelled     = "cancelled"
)

// dependencies is what the saga asks of other services.
type dependencies interface {
	Reserve(ctx context.Context, orderID string, items []orderItem) error
	Release(ctx context.Context, orderID string) error
	Commit(ctx context.Context, orderID string) error
	Charge(ctx context.Context, o order, c card.Input) (chargeResult, error)
	Void(ctx context.Context, orderID string) (chargeResult, error)
	Refund(ctx context.Context, paymentID string) error
	ReturnStock(ctx context.Context, orderID string) error
	RemoveFromCart(ctx context.Context, userID string, items []orderItem) error
}

// sagaStore persists the saga's transitions.
type sagaStore interface {
	// Advance moves order o from its step to `to` with status and the given fields, only if it is still at
	// that step (compare and set); it returns the order as stored afterwards, moved or not.
	Advance(ctx context.Context, o order, to transition) (order, error)
}

// transition is the new state of an order.
type transition struct {
	step, status, paymentID, reason string
}

// saga drives orders through their steps. Every step is idempotent on the other side, and every transition is
// a compare-and-set, so the saga may run for one order from a request, a repeated request and the recovery
// worker at once: the steps happen once and all of them see the same end.
type saga struct {
	store sagaStore
	deps  dependencies
	log   hclog.Logger
	// afterStep, when set (tests), runs after each transition is stored, with the step it left and whether a
	// card came with the request: a test panics there to crash the saga between two steps.
	afterStep func(o order, from string, withCard bool)
}

// crashAfterStep is what the sagas run builds call after each step: nil but in the tests that crash an
// in-process orders between two steps (a charge and its confirmation, a refund and its stock return) and start
// it again.
var crashAfterStep func(o order, from string, withCard bool)

// drive runs o's saga as far as it can. With a card it may charge; without (recovery) it closes the order to
// charges instead. It returns the order as far as it got; an error means a dependency failed and the order is
// still pending, to be finished by a repeated request or by recovery.
func (s *saga) drive(ctx context.Context, o order, c *card.Input) (order, error) {
	for range 10 { // each round moves at least one step, or returns; the bound only guards against a bug
		var (
			next transition
			err  error
		)
		switch o.Step {
		case stepDone:
			return o, nil
		case stepCreated:
			next, err = s.reserve(ctx, o)
		case stepReserved:
			next, err = s.pay(ctx, o, c)
		case stepCharged:
			next, err = s.confirm(ctx, o)
		case stepDeclined:
			if err = s.deps.Release(ctx, o.ID); err == nil {
				next = transition{step: stepDone, status: statusPaymentFailed, reason: o.FailureReason}
			}
		case stepCancelling: // refunds are idempotent per payment: a repeat refunds nothing more
			if err = s.deps.Refund(ctx, o.PaymentID); err == nil {
				next = transition{step: stepRefunded, status: statusConfirmed}
			}
		case stepRefunded: // a committed reservation is returned once
			if err = s.deps.ReturnStock(ctx, o.ID); err == nil {
				next = transition{step: stepDone, status: statusCancelled}
			}
		default:
			return o, fmt.Errorf("order %s: unknown step %q", o.ID, o.Step)
		}
		if err != nil {
			s.log.Warn("order stays pending", "order_id", o.ID, "step", o.Step, "error", err)
			return o, err
		}
		from := o.Step
		if o, err = s.store.Advance(ctx, o, next); err != nil {
			return o, err
		}
		if o.Step == next.step {
			s.log.Info("order advanced", "order_id", o.ID, "from", from, "to", o.Step, "status", o.Status)
		}
		if s.afterStep != nil && o.Step == next.step {
			s.afterStep(o, from, c != nil)
		}
	}
	return o, fmt.Errorf("order %s: saga did not settle", o.ID)
}

func (s *saga) reserve(ctx context.Context, o order) (transition, error) {
	err := s.deps.Reserve(ctx, o.ID, o.Items)
	var refused *errStockRefused
	if errors.As(err, &refused) {
		// Nothing was taken; record the release so a late retry of the reservation cannot take stock either.
		if err := s.deps.Release(ctx, o.ID); err != nil {
			return transition{}, err
		}
		return transition{step: stepDone, status: statusRejected, reason: refused.code + ": " + refused.message}, nil
	}
	if err != nil {
		return transition{}, err
	}
	return transition{step: stepReserved, status: statusPending}, nil
}

// pay charges the card, or, without one (recovery: the card is never stored), closes the order to charges so
// that a charge still in flight cannot land later, and goes by what payments says happened.
func (s *saga) pay(ctx context.Context, o order, c *card.Input) (transition, error) {
	var (
		res chargeResult
		err error
	)
	if c != nil {
		res, err = s.deps.Charge(ctx, o, *c)
	} else {
		res, err = s.deps.Void(ctx, o.ID)
	}
	if err != nil {
		return transition{}, err
	}
	switch res.status {
	case "authorized":
		return transition{step: stepCharged, status: statusPending, paymentID: res.paymentID}, nil
	case "declined", "voided", "refunded":
		return transition{step: stepDeclined, status: statusPending, paymentID: res.paymentID, reason: nonEmpty(res.reason, res.status)}, nil
	}
	return transition{}, fmt.Errorf("payment for order %s in unexpected status %q", o.ID, res.status)
}

// confirm keeps the reserved stock and takes the ordered products out of the cart. If catalog released the
// reservation meanwhile (it cannot, in normal operation), the charge is refunded and the order fails.
func (s *saga) confirm(ctx context.Context, o order) (transition, error) {
	err := s.deps.Commit(ctx, o.ID)
	if errors.Is(err, errReservationReleased) {
		if err := s.deps.Refund(ctx, o.PaymentID); err != nil {
			return transition{}, err
		}
		return transition{step: stepDone, status: statusPaymentFailed, reason: "stock_released_refunded"}, nil
	}
	if err != nil {
		return transition{}, err
	}
	if err := s.deps.RemoveFromCart(ctx, o.UserID, o.Items); err != nil {
		return transition{}, err
	}
	return transition{step: stepDone, status: statusConfirmed}, nil
}
