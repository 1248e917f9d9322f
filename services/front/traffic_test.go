package main

import (
	"testing"
	"time"
)

func TestTraffic(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	tr := newTraffic()
	tr.now = func() time.Time { return clock }

	// Second 0: 100 answers, 2 of them 5xx, one slow; an ejection. Second 1: nothing. Second 2: one answer.
	for i := range 100 {
		status, took := 200, 3*time.Millisecond
		if i < 2 {
			status = 502
		}
		if i == 99 {
			took = 700 * time.Millisecond
		}
		tr.record(tr.now(), status, took)
	}
	tr.ejected()
	clock = clock.Add(2 * time.Second)
	tr.record(tr.now(), 200, 20*time.Second) // beyond the last bound
	clock = clock.Add(time.Second)

	s := tr.series()
	n := len(s.Requests)
	if n != trafficWindow-1 || s.Start != clock.Unix()-int64(n) {
		t.Fatalf("series: got %d points from %d; want %d ending just before %d", n, s.Start, trafficWindow-1, clock.Unix())
	}
	tests := []struct {
		name       string
		at         int // points before the end
		requests   uint32
		errorRatio float64
		p99ms      float64
		ejections  uint32
	}{
		{"busy second", 3, 100, 0.02, 5, 1},
		{"idle second", 2, 0, 0, 0, 0},
		{"one very slow answer", 1, 1, 0, 20000, 0},
	}
	for _, tc := range tests {
		i := n - tc.at
		if s.Requests[i] != tc.requests || s.ErrorRatio[i] != tc.errorRatio || s.P99Ms[i] != tc.p99ms || s.Ejections[i] != tc.ejections {
			t.Errorf("%s: got requests %d, error ratio %v, p99 %v ms, ejections %d; want %d, %v, %v, %d", tc.name,
				s.Requests[i], s.ErrorRatio[i], s.P99Ms[i], s.Ejections[i], tc.requests, tc.errorRatio, tc.p99ms, tc.ejections)
		}
	}

	// A whole window later the old seconds are gone, not mixed into the new ones.
	clock = clock.Add(trafficWindow * time.Second)
	tr.record(tr.now(), 200, time.Millisecond)
	clock = clock.Add(time.Second)
	s = tr.series()
	var total uint32
	for _, r := range s.Requests {
		total += r
	}
	if total != 1 {
		t.Fatalf("after a whole window: got %d requests in the series; want 1", total)
	}
}
