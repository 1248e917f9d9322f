package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// wrkResult is what one wrk run reports.
type wrkResult struct {
	RPS      float64
	P50, P99 time.Duration
	Errors   int // non-2xx answers plus socket errors
}

var (
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPercent = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// runWrk runs wrk with one thread and conns connections against url for d (bounded by ctx).
func runWrk(ctx context.Context, wrk, url string, conns int, d time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wrk, "-t1", "-c"+strconv.Itoa(conns), "-d"+d.String(), "--latency", url).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", url, err, bytes.TrimSpace(out))
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk's report.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's report: %q", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPercent.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.Errors += n
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	return r, nil
}

// rateResult is what one fixed-rate run measured. Latency counts from when a request was due, not from when
// it was sent: a request that waited for a free connection waited for the server (no coordinated omission).
type rateResult struct {
	Sent, Failed, Late int // Late: still unanswered when the run ended (given up)
	Elapsed            time.Duration
	P50, P99, P999     time.Duration
}

// Achieved is the rate of answered requests.
func (r rateResult) Achieved() float64 {
	return float64(r.Sent-r.Failed-r.Late) / r.Elapsed.Seconds()
}

// fixedRate sends GET url at rate requests per second for d, open loop, over at most conns keep-alive
// connections, and reports latency percentiles. It stops by itself: whatever is unanswered 5 s after d is
// counted as late.
func fixedRate(ctx context.Context, url string, rate float64, d time.Duration, conns int) (rateResult, error) {
	n := int(rate * d.Seconds())
	if n < 1 || conns < 1 {
		return rateResult{}, fmt.Errorf("fixed rate: nothing to send (rate %.0f/s for %s)", rate, d)
	}
	client := &fasthttp.Client{MaxConnsPerHost: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxConnWaitTimeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()

	due := make(chan time.Time, n)
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		failed    int
		wg        sync.WaitGroup
	)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			var mine []time.Duration
			bad := 0
			defer func() {
				mu.Lock()
				latencies = append(latencies, mine...)
				failed += bad
				mu.Unlock()
			}()
			for {
				select {
				case <-ctx.Done():
					return
				case at, ok := <-due:
					if !ok {
						return
					}
					err := client.DoDeadline(req, resp, at.Add(10*time.Second))
					if err != nil || resp.StatusCode() != fasthttp.StatusOK {
						bad++
						continue
					}
					mine = append(mine, time.Since(at))
				}
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
schedule:
	for sent < n {
		select {
		case <-ctx.Done():
			break schedule
		case now := <-tick.C:
			for sent < n {
				at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
				if at.After(now) {
					break
				}
				due <- at
				sent++
			}
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	r := rateResult{Sent: sent, Failed: failed, Late: sent - failed - len(latencies), Elapsed: elapsed}
	if len(latencies) == 0 {
		return r, fmt.Errorf("fixed rate: no request to %s answered 200", url)
	}
	q := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	r.P50, r.P99, r.P999 = q(0.50), q(0.99), q(0.999)
	return r, nil
}

// rssMiB reads a process's resident set (VmRSS) and its peak (VmHWM) in MiB.
func rssMiB(status []byte) (rss, peak float64) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			continue
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	return rss, peak
}
