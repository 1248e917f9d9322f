package balancer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"shoplab/internal/consulx"
)

func instances(ids ...string) []consulx.Instance {
	var out []consulx.Instance
	for i, id := range ids {
		out = append(out, consulx.Instance{ID: id, Address: "127.0.0.1", Port: 9000 + i})
	}
	return out
}

func byID(b *Balancer, id string) *Endpoint {
	for _, e := range b.Endpoints() {
		if e.ID == id {
			return e
		}
	}
	return nil
}

func TestPickPrefersLessLoaded(t *testing.T) {
	b := New(Options{})
	b.Update(instances("a", "b", "c"))
	busy := byID(b, "a")
	for range 10 {
		busy.Begin()
	}
	counts := map[string]int{}
	for range 3000 {
		e, err := b.Pick()
		if err != nil {
			t.Fatal(err)
		}
		counts[e.ID]++
	}
	if counts["a"] != 0 || counts["b"] < 1200 || counts["c"] < 1200 {
		t.Fatalf("picks: got %v; want none for the loaded a and b, c about even", counts)
	}
}

func TestEjection(t *testing.T) {
	b := New(Options{BaseEjection: 100 * time.Millisecond, MaxEjection: 300 * time.Millisecond})
	b.Update(instances("a", "b"))
	a := byID(b, "a")
	if d := b.Eject(a); d != 100*time.Millisecond {
		t.Fatalf("first ejection: got %s; want 100ms", d)
	}
	for range 200 {
		if e, _ := b.Pick(); e.ID == "a" {
			t.Fatal("picked an ejected instance while another was eligible")
		}
	}
	// Consecutive failures double the ejection, up to the cap.
	if d := b.Eject(a); d != 200*time.Millisecond {
		t.Fatalf("second ejection: got %s; want 200ms", d)
	}
	if d := b.Eject(a); d != 300*time.Millisecond {
		t.Fatalf("third ejection: got %s; want the 300ms cap", d)
	}
	// Consul updates keep the endpoint and its ejection.
	b.Update(instances("a", "b", "c"))
	if byID(b, "a") != a || a.EjectedUntil().IsZero() {
		t.Fatal("update replaced or un-ejected a known instance")
	}
	// When the time is up it is eligible again (the next request re-probes it); success resets the streak.
	time.Sleep(320 * time.Millisecond)
	seen := false
	for range 300 {
		if e, _ := b.Pick(); e.ID == "a" {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatal("a was never picked after its ejection ended")
	}
	b.Succeeded(a)
	if d := b.Eject(a); d != 100*time.Millisecond {
		t.Fatalf("ejection after a success: got %s; want the base 100ms again", d)
	}
}

func TestAllEjectedFailsOpen(t *testing.T) {
	b := New(Options{BaseEjection: time.Minute})
	b.Update(instances("a", "b"))
	b.Eject(byID(b, "a"))
	b.Eject(byID(b, "b"))
	if _, err := b.Pick(); err != nil {
		t.Fatalf("every instance ejected: got %v; want one of them (Consul still calls them passing)", err)
	}
}

func TestPickExclude(t *testing.T) {
	b := New(Options{})
	if _, err := b.Pick(); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("empty: got %v; want ErrNoInstances", err)
	}
	b.Update(instances("a", "b"))
	a := byID(b, "a")
	for i := range 50 {
		if e, _ := b.Pick(a); e.ID != "b" {
			t.Fatalf("pick %d excluding a: got %s; want b", i, e.ID)
		}
	}
	if _, err := b.Pick(a, byID(b, "b")); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("all excluded: got %v; want ErrNoInstances", err)
	}
}

func TestUpdateRemoves(t *testing.T) {
	b := New(Options{})
	b.Update(instances("a", "b"))
	b.Update(instances("b"))
	if got := fmt.Sprint(len(b.Endpoints())); got != "1" {
		t.Fatalf("endpoints: got %s; want 1", got)
	}
}

func TestConnFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"dial failed", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}, true},
		{"reset", fmt.Errorf("get: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), true},
		{"host stopped acknowledging", fmt.Errorf("get: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}), true},
		{"closed", io.ErrUnexpectedEOF, true},
		{"the caller's deadline", context.DeadlineExceeded, false},
		{"other", errors.New("boom"), false},
	}
	for _, tc := range tests {
		if got := ConnFailure(tc.err); got != tc.want {
			t.Errorf("ConnFailure(%s): got %v; want %v", tc.name, got, tc.want)
		}
	}
}
