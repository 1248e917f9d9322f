package main

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/card"
)

// crashAfterCharge crashes a request's saga between the charge and the confirmation (the database tests use it
// through crashAfterStep).
func crashAfterCharge(o order, from string, withCard bool) {
	if from == stepReserved && o.Step == stepCharged && withCard {
		panic(http.ErrAbortHandler)
	}
}

// fakeDeps are the saga's dependencies in memory, idempotent as the real ones are (per order, per payment), and
// counting what each did once.
type fakeDeps struct {
	calls    []string // every call, in order
	fail     string   // a call that fails (once) with errDown
	refuse   bool     // Reserve finds too little stock
	decline  bool     // Charge is declined
	released bool     // Commit finds the reservation released
	voidSays string   // what Void finds: "" (nothing charged: voided) or "authorized"
	effects  map[string]int
}

var errDown = errors.New("dependency down")

func (d *fakeDeps) call(name string) error {
	d.calls = append(d.calls, name)
	if d.fail == name {
		d.fail = ""
		return errDown
	}
	return nil
}

// effect counts a side effect once per key, as the real services' idempotency does.
func (d *fakeDeps) effect(key string) {
	if d.effects == nil {
		d.effects = map[string]int{}
	}
	if d.effects[key] == 0 {
		d.effects[key] = 1
	}
}

func (d *fakeDeps) Reserve(_ context.Context, id string, _ []orderItem) error {
	if err := d.call("reserve"); err != nil {
		return err
	}
	if d.refuse {
		return &errStockRefused{code: "insufficient_stock", message: "grinder: 1 left"}
	}
	d.effect("reserved " + id)
	return nil
}

func (d *fakeDeps) Release(_ context.Context, id string) error {
	if err := d.call("release"); err != nil {
		return err
	}
	d.effect("released " + id)
	return nil
}

func (d *fakeDeps) Commit(_ context.Context, id string) error {
	if err := d.call("commit"); err != nil {
		return err
	}
	if d.released {
		return errReservationReleased
	}
	d.effect("committed " + id)
	return nil
}

func (d *fakeDeps) Charge(_ context.Context, o order, _ card.Input) (chargeResult, error) {
	if err := d.call("charge"); err != nil {
		return chargeResult{}, err
	}
	if d.decline {
		return chargeResult{status: "declined", paymentID: "pay-" + o.ID, reason: "card_declined"}, nil
	}
	d.effect("charged " + o.ID)
	return chargeResult{status: "authorized", paymentID: "pay-" + o.ID}, nil
}

func (d *fakeDeps) Void(_ context.Context, id string) (chargeResult, error) {
	if err := d.call("void"); err != nil {
		return chargeResult{}, err
	}
	if d.voidSays == "authorized" {
		return chargeResult{status: "authorized", paymentID: "pay-" + id}, nil
	}
	return chargeResult{status: "voided"}, nil
}

func (d *fakeDeps) Refund(_ context.Context, paymentID string) error {
	if err := d.call("refund"); err != nil {
		return err
	}
	d.effect("refunded " + paymentID)
	return nil
}

func (d *fakeDeps) ReturnStock(_ context.Context, id string) error {
	if err := d.call("return"); err != nil {
		return err
	}
	d.effect("returned " + id)
	return nil
}

func (d *fakeDeps) RemoveFromCart(_ context.Context, userID string, _ []orderItem) error {
	if err := d.call("uncart"); err != nil {
		return err
	}
	d.effect("uncarted " + userID)
	return nil
}

// fakeStore keeps one order and advances it by compare-and-set, as postgres.go does.
type fakeStore struct{ o order }

func (s *fakeStore) Advance(_ context.Context, o order, to transition) (order, error) {
	if s.o.Step != o.Step {
		return s.o, nil // moved meanwhile: the stored order wins
	}
	s.o.Step, s.o.Status = to.step, to.status
	if to.paymentID != "" {
		s.o.PaymentID = to.paymentID
	}
	if to.reason != "" {
		s.o.FailureReason = to.reason
	}
	return s.o, nil
}

// driveCrashing drives o, crashing (a panic, as an aborted request) after the stored transition out of crashAt
// ("" for none), then drives it again from what is stored, as a repeated request or recovery does.
func driveCrashing(t *testing.T, s *saga, st *fakeStore, c *card.Input, crashAt string) (order, error) {
	t.Helper()
	s.afterStep = func(o order, from string, _ bool) {
		if from == crashAt {
			panic(http.ErrAbortHandler)
		}
	}
	crashed := func() (crashed bool) {
		defer func() {
			if r := recover(); r != nil {
				crashed = true
			}
		}()
		_, _ = s.drive(context.Background(), st.o, c)
		return false
	}()
	s.afterStep = nil
	if crashed {
		return s.drive(context.Background(), st.o, c)
	}
	return st.o, nil
}

// TestSagaSteps walks the checkout and cancel sagas through every path and every crash point between two steps,
// in memory: each ends where it must, and each side effect happened once (no double charge, no stock taken
// twice, a refund only with its charge).
func TestSagaSteps(t *testing.T) {
	goodCard := &card.Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, CVC: "123"}
	tests := []struct {
		name       string
		start      string // the order's step
		card       *card.Input
		setup      func(d *fakeDeps)
		wantStatus string
		wantEffect []string
	}{
		{"confirmed", stepCreated, goodCard, nil, statusConfirmed,
			[]string{"charged o1", "committed o1", "reserved o1", "uncarted u1"}},
		{"declined", stepCreated, goodCard, func(d *fakeDeps) { d.decline = true }, statusPaymentFailed,
			[]string{"released o1", "reserved o1"}},
		{"stock refused", stepCreated, goodCard, func(d *fakeDeps) { d.refuse = true }, statusRejected,
			[]string{"released o1"}},
		{"reservation released under it: refunded", stepCreated, goodCard, func(d *fakeDeps) { d.released = true }, statusPaymentFailed,
			[]string{"charged o1", "refunded pay-o1", "reserved o1"}},
		{"recovered without a card, nothing charged", stepReserved, nil, nil, statusPaymentFailed,
			[]string{"released o1"}},
		{"recovered without a card, the charge had landed", stepReserved, nil, func(d *fakeDeps) { d.voidSays = "authorized" }, statusConfirmed,
			[]string{"committed o1", "uncarted u1"}},
		{"cancelled", stepCancelling, nil, nil, statusCancelled,
			[]string{"refunded pay-o1", "returned o1"}},
	}
	crashPoints := []string{"", stepCreated, stepReserved, stepCharged, stepDeclined, stepCancelling, stepRefunded}
	for _, tt := range tests {
		for _, crashAt := range crashPoints {
			name := tt.name
			if crashAt != "" {
				name += ", crash after leaving " + crashAt
			}
			t.Run(name, func(t *testing.T) {
				d := &fakeDeps{}
				if tt.setup != nil {
					tt.setup(d)
				}
				st := &fakeStore{o: order{ID: "o1", UserID: "u1", Step: tt.start, Status: statusPending, PaymentID: "pay-o1"}}
				s := &saga{store: st, deps: d, log: hclog.NewNullLogger()}
				o, err := driveCrashing(t, s, st, tt.card, crashAt)
				if err != nil || o.Step != stepDone || o.Status != tt.wantStatus {
					t.Fatalf("got %s/%s, %v (calls %v); want done/%s", o.Step, o.Status, err, d.calls, tt.wantStatus)
				}
				got := make([]string, 0, len(d.effects))
				for k := range d.effects {
					got = append(got, k)
				}
				slices.Sort(got)
				if !slices.Equal(got, tt.wantEffect) {
					t.Errorf("effects: got %v; want %v (calls %v)", got, tt.wantEffect, d.calls)
				}
				if n := strings.Count(strings.Join(d.calls, " "), "charge"); n > 1 {
					t.Errorf("charge asked %d times; want at most once (calls %v)", n, d.calls)
				}
			})
		}
	}
}

// TestSagaStaysPendingWhenADependencyFails: whichever call fails, the order stays at its step, pending, with the
// error; driven again once the dependency is back, it ends as it would have.
func TestSagaStaysPendingWhenADependencyFails(t *testing.T) {
	goodCard := &card.Input{Number: "4242424242424242", ExpMonth: 12, ExpYear: 2030, CVC: "123"}
	for _, fail := range []string{"reserve", "charge", "commit", "uncart"} {
		t.Run(fail, func(t *testing.T) {
			d := &fakeDeps{fail: fail}
			st := &fakeStore{o: order{ID: "o1", UserID: "u1", Step: stepCreated, Status: statusPending}}
			s := &saga{store: st, deps: d, log: hclog.NewNullLogger()}
			o, err := s.drive(context.Background(), st.o, goodCard)
			if !errors.Is(err, errDown) || o.Status != statusPending || o.Step == stepDone {
				t.Fatalf("with %s down: got %s/%s, %v; want pending short of done, the error", fail, o.Step, o.Status, err)
			}
			o, err = s.drive(context.Background(), st.o, goodCard)
			if err != nil || o.Status != statusConfirmed {
				t.Fatalf("driven again: got %s/%s, %v; want confirmed", o.Step, o.Status, err)
			}
			if n := len(d.effects); n != 4 {
				t.Errorf("effects: got %v; want each of reserve, charge, commit, uncart once", d.effects)
			}
		})
	}
}
