package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runLoadWith(ctx, args, getenv, stdout, stderr, nil)
}

// runLoadWith is runLoad that calls prepared, if not nil, once the accounts are ready and before the load
// starts (shoplab bench measures the CPU the load alone costs).
func runLoadWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, prepared func()) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	front := fs.String("front", firstNonEmpty(getenv("SHOPLAB_FRONT"), defaultFront()), "the front's URL")
	duration := fs.Duration("duration", 30*time.Second, "how long to send load (at most 1h)")
	rate := fs.Float64("rate", 20, "journeys started per second (0.1 to 5000)")
	users := fs.Int("users", 8, "accounts per journey kind that uses one (1 to 500)")
	maxInFlight := fs.Int("max-in-flight", 256, "journeys running at once at most; beyond it a start is dropped")
	timeout := fs.Duration("timeout", 15*time.Second, "time allowed for each request")
	maxErrors := fs.Float64("max-error-rate", 0.01, "exit non-zero when more than this share of requests fail")
	tokenFile := fs.String("admin-token-file", "", "a file holding an admin's token (or set SHOPLAB_ADMIN_TOKEN): restock products "+
		"running low during the run (shoplab admin token --email …); never on the command line, where ps shows it to everyone")
	argToken := fs.String("admin-token", "", "refused: a token on the command line is in ps for every user; use SHOPLAB_ADMIN_TOKEN or --admin-token-file")
	restockBelow := fs.Int("restock-below", 50, "with an admin's token: restock a product whose stock falls below this")
	restockTo := fs.Int("restock-to", 500, "with an admin's token: restock up to this")
	scenario := fs.String("scenario", "mixed", "mixed: journeys started at --rate (browse 10 : cart 3 : checkout 1); "+
		"checkout: --shoppers each set one cart line and place an order, again and again, as fast as the shop answers")
	shoppers := fs.Int("shoppers", 16, "checkout scenario: shoppers at once (1 to 512)")
	verify := fs.Bool("verify-orders", false, "after the run, look up every order the shop confirmed during it: "+
		"exit non-zero if one is gone or no longer confirmed (a failover test: no acknowledged order may be lost)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *argToken != "" {
		return usageError{"--admin-token puts the token in every user's ps: set SHOPLAB_ADMIN_TOKEN or use --admin-token-file instead"}
	}
	adminToken, err := readToken(*tokenFile, getenv("SHOPLAB_ADMIN_TOKEN"))
	if err != nil {
		return err
	}
	if *scenario != "mixed" && *scenario != "checkout" {
		return usageError{"--scenario must be mixed or checkout"}
	}
	if *shoppers < 1 || *shoppers > 512 {
		return usageError{"--shoppers must be from 1 to 512"}
	}
	if *restockBelow < 0 || *restockTo <= *restockBelow || *restockTo > 1_000_000 {
		return usageError{"--restock-to must be above --restock-below and at most 1000000"}
	}
	switch {
	case *duration <= 0 || *duration > time.Hour:
		return usageError{"--duration must be more than 0 and at most 1h"}
	case *rate < 0.1 || *rate > 5000:
		return usageError{"--rate must be from 0.1 to 5000 journeys per second"}
	case *users < 1 || *users > 500:
		return usageError{"--users must be from 1 to 500"}
	case *maxInFlight < 1 || *maxInFlight > 10000:
		return usageError{"--max-in-flight must be from 1 to 10000"}
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}}
	l := &loader{front: *front, client: client, stats: map[string]*stepStats{}}
	// The checkout scenario has one journey kind that uses an account; the mixed one has two (cart, checkout).
	accounts, kinds := *users, 2
	if *scenario == "checkout" {
		accounts, kinds = max(*users, *shoppers), 1
	}
	fmt.Fprintf(stderr, "load: preparing %d accounts per journey kind against %s…\n", accounts, *front)
	if err := l.prepare(ctx, accounts, kinds, stderr); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	watchHints(stderr, *front)
	l.t0 = time.Now()
	if prepared != nil {
		prepared()
	}
	if *scenario == "checkout" {
		fmt.Fprintf(stderr, "load: %d shoppers checking out for %s (set a cart line, place an order, again)\n", *shoppers, *duration)
	} else {
		fmt.Fprintf(stderr, "load: %.1f journeys/s for %s (browse 10 : cart 3 : checkout 1)\n", *rate, *duration)
	}
	var restocked sync.WaitGroup
	if adminToken != "" {
		rctx, stopRestock := context.WithTimeout(ctx, *duration)
		defer stopRestock()
		r := &restocker{s: newShopper(*front, client), below: *restockBelow, to: *restockTo}
		r.s.token = adminToken
		restocked.Add(1)
		go func() { defer restocked.Done(); r.run(rctx, 2*time.Second, stderr) }()
		defer func() { restocked.Wait(); r.report(stdout) }()
	}
	var elapsed time.Duration
	if *scenario == "checkout" {
		var placed int64
		elapsed, placed = l.checkouts(ctx, *duration, *shoppers, stderr)
		fmt.Fprintf(stdout, "checkouts: %d placed in %.1fs = %.1f/s with %d shoppers\n\n", placed, elapsed.Seconds(), float64(placed)/elapsed.Seconds(), *shoppers)
	} else {
		elapsed = l.drive(ctx, *duration, *rate, *maxInFlight, stderr)
	}
	err = l.report(stdout, elapsed, *maxErrors)
	if *verify {
		err = errors.Join(err, l.verifyOrders(ctx, stdout))
	}
	return err
}

type stepStats struct {
	durations []time.Duration
	errors    int
	samples   []string
}

type loader struct {
	front        string
	client       *http.Client
	accountPause time.Duration // between attempts at making an account (newAccount)
	catalog      []product
	carts        chan *shopper // accounts for cart journeys
	buyers       chan *shopper // accounts for checkout journeys

	mu        sync.Mutex
	stats     map[string]*stepStats
	t0        time.Time     // when the load began: failures are reported as seconds since
	firstFail time.Duration // since t0; zero until a request fails
	lastFail  time.Duration
	confirmed []placedOrder // every order the shop answered 201 confirmed
	started   atomic.Int64
	dropped   atomic.Int64
	failed    atomic.Int64
	ok        atomic.Int64
}

// prepare reads the catalog and makes users accounts for each journey kind: checkouts, and carts too when kinds
// is 2 (making an account is two password hashes on auth: only those a load uses).
func (l *loader) prepare(ctx context.Context, users, kinds int, stderr io.Writer) error {
	s := newShopper(l.front, l.client)
	a, err := s.expect(ctx, 200, "GET", "/api/catalog/v1/products?limit=100", nil)
	if err != nil {
		return err
	}
	var page struct {
		Products []product `json:"products"`
	}
	if err := a.decode(&page); err != nil {
		return err
	}
	l.catalog = page.Products
	if len(l.catalog) == 0 {
		return fmt.Errorf("the catalog is empty")
	}
	l.carts, l.buyers = make(chan *shopper, users), make(chan *shopper, users)
	pools := []chan *shopper{l.buyers, l.carts}[:kinds]
	for range users {
		for _, pool := range pools {
			u, err := l.newAccount(ctx, stderr)
			if err != nil {
				return err
			}
			pool <- u
		}
	}
	return nil
}

// newAccount registers and logs in a shopper for the load. Making accounts is not what a load measures: a
// failed attempt (a lab slow to answer, say) is tried again with a fresh account, twelve attempts at most, the
// pause between them accountPause (3 s unless set), doubling up to 15 s (about 140 s in all: a starved VM lab's
// auth has been seen failing for over 80 s, 2026-12-06).
func (l *loader) newAccount(ctx context.Context, stderr io.Writer) (*shopper, error) {
	const attempts = 12
	pause := l.accountPause
	if pause <= 0 {
		pause = 3 * time.Second
	}
	for try := 1; ; try, pause = try+1, min(2*pause, max(pause, 15*time.Second)) {
		u := newShopper(l.front, l.client)
		_, err := u.register(ctx)
		if err == nil || try == attempts || ctx.Err() != nil {
			return u, err
		}
		fmt.Fprintf(stderr, "load: making an account failed (attempt %d of %d); trying again in %s: %v\n", try, attempts, pause, err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// record notes one request of step.
func (l *loader) record(step string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats[step]
	if st == nil {
		st = &stepStats{}
		l.stats[step] = st
	}
	st.durations = append(st.durations, took)
	if err != nil {
		at := time.Since(l.t0)
		if l.failed.Load() == 0 {
			l.firstFail = at
		}
		l.lastFail = at
		st.errors++
		l.failed.Add(1)
		if len(st.samples) < 3 {
			st.samples = append(st.samples, err.Error())
		}
	} else {
		l.ok.Add(1)
	}
}

// timed runs one request as a named step; a failure is a *failedStep.
func (l *loader) timed(ctx context.Context, s *shopper, step string, want int, method, path string, body any, headers ...string) error {
	start := time.Now()
	a, err := s.expect(ctx, want, method, path, body, headers...)
	l.record(step, time.Since(start), err)
	if err != nil {
		return &failedStep{a: a, err: err}
	}
	return nil
}

// failedStep is a step that failed, with the answer that made it fail (status 0 when there was none).
type failedStep struct {
	a   answer
	err error
}

func (f *failedStep) Error() string { return f.err.Error() }
func (f *failedStep) Unwrap() error { return f.err }

// pauseAfter is how long a checkout shopper waits after a failed step before its next checkout, as a client
// of API.md would: what a 429 or 503 asks in Retry-After, at most 5 s, and otherwise a second. Without it the
// closed loop turns a failure into a storm: through catalog's failover in the VM lab, 4 shoppers whose steps
// failed in milliseconds sent 17 checkouts a second (3.5 while they succeeded) at a lab that was failing over.
func pauseAfter(err error) time.Duration {
	var f *failedStep
	if errors.As(err, &f) && (f.a.status == http.StatusTooManyRequests || f.a.status == http.StatusServiceUnavailable) &&
		f.a.header.Get("Retry-After") != "" {
		return min(retryAfter(f.a), 5*time.Second)
	}
	return time.Second
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (l *loader) browse(ctx context.Context) {
	s := newShopper(l.front, l.client)
	p := l.catalog[rand.IntN(len(l.catalog))]
	q := "/api/catalog/v1/products?limit=20&category=" + url.QueryEscape(p.Category)
	if rand.IntN(3) == 0 {
		q = "/api/catalog/v1/products?limit=20&q=" + url.QueryEscape(p.Name[:min(4, len(p.Name))])
	}
	if l.timed(ctx, s, "browse: list products", 200, "GET", q, nil) == nil {
		_ = l.timed(ctx, s, "browse: product page", 200, "GET", "/api/catalog/v1/products/"+p.ID, nil)
	}
}

func take(ctx context.Context, pool chan *shopper) *shopper {
	select {
	case s := <-pool:
		return s
	case <-ctx.Done():
		return nil
	}
}

func (l *loader) cart(ctx context.Context) {
	s := take(ctx, l.carts)
	if s == nil {
		return
	}
	defer func() { l.carts <- s }()
	p := l.catalog[rand.IntN(len(l.catalog))]
	if l.timed(ctx, s, "cart: set item", 200, "PUT", "/api/cart/v1/cart/items/"+p.ID, map[string]int{"quantity": 1 + rand.IntN(3)}) == nil {
		_ = l.timed(ctx, s, "cart: view cart", 200, "GET", "/api/cart/v1/cart", nil)
	}
}

// placedOrder is an order the shop confirmed, with whose it is.
type placedOrder struct {
	s     *shopper
	id    string
	total int
}

// placeOrder places s's cart as the step "checkout: place order" and remembers the order when the shop
// confirmed it; it fails as timed does.
func (l *loader) placeOrder(ctx context.Context, s *shopper) error {
	start := time.Now()
	a, err := s.expect(ctx, 201, "POST", "/api/orders/v1/orders", checkoutBody("4242424242424242"), "Idempotency-Key", "load-"+randomHex(12))
	var o struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Total  int    `json:"total_cents"`
	}
	if err == nil {
		err = a.decode(&o)
	}
	l.record("checkout: place order", time.Since(start), err)
	if err != nil {
		return &failedStep{a: a, err: err}
	}
	if o.Status == "confirmed" {
		l.mu.Lock()
		l.confirmed = append(l.confirmed, placedOrder{s: s, id: o.ID, total: o.Total})
		l.mu.Unlock()
	}
	return nil
}

// verifyOrders looks up every order confirmed during the run, as its owner: each must still be there,
// confirmed, with the same total. A lookup that fails on the way (not a 404) is tried again, a few times.
func (l *loader) verifyOrders(ctx context.Context, out io.Writer) error {
	l.mu.Lock()
	orders := slices.Clone(l.confirmed)
	l.mu.Unlock()
	var lost []string
	for _, o := range orders {
		var err error
		for try := 0; try < 5; try++ {
			var a answer
			if a, err = o.s.expect(ctx, 200, "GET", "/api/orders/v1/orders/"+o.id, nil); err == nil {
				var got struct {
					Status string `json:"status"`
					Total  int    `json:"total_cents"`
				}
				if err = a.decode(&got); err == nil && (got.Status != "confirmed" || got.Total != o.total) {
					err = fmt.Errorf("order %s: got %s, %d cents; want confirmed, %d cents", o.id, got.Status, got.Total, o.total)
				}
				break
			}
			if a.status == 404 || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			lost = append(lost, err.Error())
		}
	}
	fmt.Fprintf(out, "orders: %d confirmed during the run; afterwards %d found confirmed, %d lost or changed\n", len(orders), len(orders)-len(lost), len(lost))
	for _, e := range lost[:min(len(lost), 5)] {
		fmt.Fprintf(out, "  %s\n", e)
	}
	if len(lost) > 0 {
		return fmt.Errorf("%d confirmed order(s) lost or changed", len(lost))
	}
	return nil
}

// checkouts runs the checkout scenario: shoppers loops of one cart line and one order each (closed loop: each
// shopper starts its next checkout when the last answered, or after pauseAfter when it failed), for duration; it returns how long they ran and how
// many orders they placed.
func (l *loader) checkouts(ctx context.Context, duration time.Duration, shoppers int, progress io.Writer) (time.Duration, int64) {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	work := context.WithoutCancel(ctx) // a checkout under way finishes
	var (
		wg     sync.WaitGroup
		placed atomic.Int64
	)
	start := time.Now()
	for range shoppers {
		s := take(ctx, l.buyers)
		if s == nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { l.buyers <- s }()
			for i := 0; ctx.Err() == nil && i < 1_000_000; i++ {
				l.started.Add(1)
				p := l.catalog[rand.IntN(len(l.catalog))]
				err := l.timed(work, s, "checkout: set item", 200, "PUT", "/api/cart/v1/cart/items/"+p.ID, map[string]int{"quantity": 1})
				if err == nil {
					if err = l.placeOrder(work, s); err == nil {
						placed.Add(1)
					}
				}
				if err != nil {
					pause(ctx, pauseAfter(err))
				}
			}
		}()
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			fmt.Fprintln(progress)
			return time.Since(start), placed.Load()
		case <-t.C:
			fmt.Fprintf(progress, "\r  %4.0fs/%-4.0fs  checkouts %-7d failed requests %-5d   ", time.Since(start).Seconds(), duration.Seconds(), placed.Load(), l.failed.Load())
		}
	}
}

// watchHints says where to watch the shop while the load runs.
func watchHints(out io.Writer, front string) {
	fmt.Fprintf(out, "load: watch it on %s/status (live plots) and in Prometheus: http://127.0.0.1:9095 for make run, http://localhost:9090 for the VM lab (default ports)\n", strings.TrimRight(front, "/"))
}

func (l *loader) checkout(ctx context.Context) {
	s := take(ctx, l.buyers)
	if s == nil {
		return
	}
	defer func() { l.buyers <- s }()
	// Buy one unit of whatever has most stock, so a long run does not sell out.
	p := l.catalog[0]
	for _, c := range l.catalog {
		if c.Stock > p.Stock {
			p = c
		}
	}
	if l.timed(ctx, s, "checkout: set item", 200, "PUT", "/api/cart/v1/cart/items/"+p.ID, map[string]int{"quantity": 1}) != nil {
		return
	}
	if l.placeOrder(ctx, s) == nil {
		_ = l.timed(ctx, s, "checkout: order history", 200, "GET", "/api/orders/v1/orders", nil)
	}
}

// drive starts journeys at rate for duration (open loop: a slow shop does not slow the schedule; starts
// beyond maxInFlight are dropped and counted), then waits for those in flight.
func (l *loader) drive(ctx context.Context, duration time.Duration, rate float64, maxInFlight int, progress io.Writer) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	report := time.NewTicker(time.Second)
	defer report.Stop()
	journeys := []func(context.Context){}
	for range 10 {
		journeys = append(journeys, l.browse)
	}
	for range 3 {
		journeys = append(journeys, l.cart)
	}
	journeys = append(journeys, l.checkout)
	// Journeys already started get their full request timeout even when the schedule ends.
	work := context.WithoutCancel(ctx)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-report.C:
			fmt.Fprintf(progress, "\r  %4.0fs/%-4.0fs  journeys %-7d requests ok %-7d failed %-5d in flight %-4d dropped %d   ",
				time.Since(start).Seconds(), duration.Seconds(), l.started.Load(), l.ok.Load(), l.failed.Load(), inFlight.Load(), l.dropped.Load())
		case <-tick.C:
			if inFlight.Load() >= int64(maxInFlight) {
				l.dropped.Add(1)
				continue
			}
			j := journeys[rand.IntN(len(journeys))]
			l.started.Add(1)
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer inFlight.Add(-1)
				j(work)
			}()
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	fmt.Fprintln(progress)
	return elapsed
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func (l *loader) report(out io.Writer, elapsed time.Duration, maxErrorRate float64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	steps := make([]string, 0, len(l.stats))
	for s := range l.stats {
		steps = append(steps, s)
	}
	sort.Strings(steps)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\trequests\terrors\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	total, failed := 0, 0
	for _, s := range steps {
		st := l.stats[s]
		d := append([]time.Duration(nil), st.durations...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", s, len(d), st.errors, ms(percentile(d, .50)), ms(percentile(d, .95)), ms(percentile(d, .99)), ms(d[len(d)-1]))
		total += len(d)
		failed += st.errors
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d journeys in %.1fs (%.1f/s), %d requests, %d failed, %d starts dropped (in-flight cap)\n",
		l.started.Load(), elapsed.Seconds(), float64(l.started.Load())/elapsed.Seconds(), total, failed, l.dropped.Load())
	if failed > 0 {
		// Also on the clock, so a failover test can hold them against when it pulled a plug (make vm-test).
		unix := func(d time.Duration) float64 { return float64(l.t0.Add(d).UnixMilli()) / 1000 }
		fmt.Fprintf(out, "failures between %.1fs and %.1fs after the start (unix %.1f to %.1f)\n",
			l.firstFail.Seconds(), l.lastFail.Seconds(), unix(l.firstFail), unix(l.lastFail))
	}
	for _, s := range steps {
		for _, e := range l.stats[s].samples {
			fmt.Fprintf(out, "  error in %s: %s\n", s, e)
		}
	}
	if total == 0 {
		return fmt.Errorf("no request completed")
	}
	if rate := float64(failed) / float64(total); rate > maxErrorRate {
		return fmt.Errorf("%.1f%% of requests failed (more than --max-error-rate %.1f%%)", 100*rate, 100*maxErrorRate)
	}
	return nil
}

// restocker keeps a long run from selling out: with an admin's token, every interval it raises each product
// that fell below a threshold back up, through the admin API (one Idempotency-Key per adjustment).
type restocker struct {
	s         *shopper
	below, to int

	times, units int
	lastErr      string
}

func (r *restocker) run(ctx context.Context, every time.Duration, progress io.Writer) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.once(ctx, progress)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *restocker) once(ctx context.Context, progress io.Writer) {
	a, err := r.s.expect(ctx, 200, "GET", "/api/catalog/v1/products?limit=100", nil)
	var page struct {
		Products []product `json:"products"`
	}
	if err == nil {
		err = a.decode(&page)
	}
	for _, p := range page.Products {
		if err != nil || ctx.Err() != nil {
			break
		}
		if p.Stock >= r.below {
			continue
		}
		delta := r.to - p.Stock
		_, err = r.s.expect(ctx, 200, "POST", "/api/catalog/v1/products/"+p.ID+"/stock-adjustments",
			map[string]any{"delta": delta, "reason": "shoplab load: restock"}, "Idempotency-Key", "load-restock-"+randomHex(12))
		if err == nil {
			r.times++
			r.units += delta
		}
	}
	if err != nil && ctx.Err() == nil && err.Error() != r.lastErr {
		r.lastErr = err.Error()
		fmt.Fprintf(progress, "\nload: restocking failed (is --admin-token an admin's live token?): %v\n", err)
	}
}

func (r *restocker) report(out io.Writer) {
	fmt.Fprintf(out, "restocked %d time(s), %d units in all (below %d, up to %d)\n", r.times, r.units, r.below, r.to)
}

// readToken is the token in file (its first line; "" for none) or else fromEnv.
func readToken(file, fromEnv string) (string, error) {
	if file == "" {
		return strings.TrimSpace(fromEnv), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	token, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if token == "" {
		return "", usageError{"--admin-token-file " + file + " is empty"}
	}
	return strings.TrimSpace(token), nil
}
