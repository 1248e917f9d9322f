package main

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	const report = `Running 1s test @ http://127.0.0.1:18777/x
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.04ms    1.33ms  13.09ms   90.91%
    Req/Sec     2.41k   466.58     2.82k    90.00%
  Latency Distribution
     50%  597.00us
     75%    1.01ms
     90%    2.22ms
     99%    7.29ms
  2396 requests in 1.00s, 1.19MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 10
Requests/sec:   2394.52
Transfer/sec:      1.19MB
`
	got, err := parseWrk(report)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{RPS: 2394.52, P50: 597 * time.Microsecond, P99: 7290 * time.Microsecond, Errors: 13}
	if got != want {
		t.Fatalf("parseWrk: got %+v; want %+v", got, want)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("parseWrk of a failed run: got no error; want one")
	}
}

func TestRSSMiB(t *testing.T) {
	status := []byte("Name:\tfront\nVmPeak:\t 1300000 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t5\n")
	rss, peak := rssMiB(status)
	if rss != 20 || peak != 40 {
		t.Fatalf("rssMiB: got %v, %v; want 20, 40", rss, peak)
	}
}

func TestRoundRatios(t *testing.T) {
	w := func(v ...float64) []wrkResult {
		rs := make([]wrkResult, len(v))
		for i, x := range v {
			rs[i].RPS = x
		}
		return rs
	}
	tests := []struct {
		name      string
		rs, other []wrkResult
		want      string
	}{
		{"odd rounds", w(80, 60, 90), w(100, 100, 100), "0.80× (0.60–0.90)"},
		{"even rounds", w(50, 70, 60, 80), w(100, 100, 100, 100), "0.65× (0.50–0.80)"},
		{"pairs, not medians", w(40, 80), w(50, 100), "0.80× (0.80–0.80)"},
		{"a round the other side lacks", w(80, 90), w(100), "0.80× (0.80–0.80)"},
		{"nothing to compare", w(80), w(0), "-"},
	}
	for _, tc := range tests {
		if got := roundRatios(tc.rs, tc.other); got != tc.want {
			t.Errorf("%s: got %q; want %q", tc.name, got, tc.want)
		}
	}
}
