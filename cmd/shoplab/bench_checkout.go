package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"shoplab/internal/topology"
	"shoplab/lab"
)

// checkoutBench is the checkout part of shoplab bench: the same lab make run starts (shifted by a port offset,
// with its own state directory, so a running make run is left alone), an admin to restock through the admin
// API, then the checkout scenario of shoplab load at each number of shoppers, with the CPU each process used.
type checkoutBench struct {
	bin, topology string
	shoppers      []int
	duration      time.Duration
	portOffset    int
	out, log      io.Writer
}

var checkoutRate = regexp.MustCompile(`checkouts: (\d+) placed in ([0-9.]+)s = ([0-9.]+)/s`)

func (c *checkoutBench) run(ctx context.Context) error {
	state, err := os.MkdirTemp("", "shoplab-bench-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	t, err := topology.Load(c.topology)
	if err != nil {
		return err
	}
	cfg := lab.Config{State: state, Bin: c.bin, Topology: t, PortOffset: c.portOffset, Out: c.log, LogLevel: "info",
		// One client address creates every shopper: lift the per-address limit on registrations and logins.
		Env: []string{"AUTH_LIMIT_ADDRESS=1000000/1m"}}
	l, err := lab.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.Stop()
	front := cfg.FrontURL()

	// An admin, for restocking during the runs.
	const adminEmail = "bench-admin@example.com"
	a := newShopper(front, &http.Client{Timeout: 15 * time.Second})
	if _, err := a.expect(ctx, 201, "POST", "/api/auth/v1/users", map[string]string{"email": adminEmail, "password": "bench admin password", "name": "Bench Admin"}); err != nil {
		return fmt.Errorf("register the bench's admin: %w", err)
	}
	var sink bytes.Buffer
	if err := runAdmin(ctx, []string{"grant", "--email", adminEmail, "--state", state, "--bin", c.bin}, nil, &sink, &sink); err != nil {
		return fmt.Errorf("grant the bench's admin: %w: %s", err, sink.String())
	}
	var token bytes.Buffer
	if err := runAdmin(ctx, []string{"token", "--email", adminEmail, "--state", state, "--bin", c.bin}, nil, &token, &sink); err != nil {
		return fmt.Errorf("the bench admin's token: %w: %s", err, sink.String())
	}

	fmt.Fprintf(c.out, "\nCheckouts through the front of the lab make run starts: shoplab load --scenario checkout, %s per run\n", c.duration)
	type row struct {
		shoppers int
		rate     float64
		report   string
		cpu      map[string]float64
		placed   int
	}
	var rows []row
	for _, n := range c.shoppers {
		var before map[string]float64
		var out bytes.Buffer
		getenv := func(k string) string {
			if k == "SHOPLAB_ADMIN_TOKEN" {
				return strings.TrimSpace(token.String())
			}
			return os.Getenv(k)
		}
		err := runLoadWith(ctx, []string{"--front", front, "--scenario", "checkout", "--shoppers", strconv.Itoa(n), "--duration", c.duration.String(),
			"--restock-below", "200", "--restock-to", "5000"}, getenv, &out, c.log,
			func() { before, _ = labCPU(state) })
		if err != nil {
			return fmt.Errorf("checkouts with %d shoppers: %w\n%s", n, err, out.String())
		}
		after, err := labCPU(state)
		if err != nil || before == nil {
			return fmt.Errorf("read the lab's CPU use: %v", err)
		}
		m := checkoutRate.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Errorf("checkouts with %d shoppers: no rate in the report:\n%s", n, out.String())
		}
		r := row{shoppers: n, report: out.String(), cpu: map[string]float64{}}
		r.placed, _ = strconv.Atoi(m[1])
		r.rate, _ = strconv.ParseFloat(m[3], 64)
		for k, v := range after {
			r.cpu[k] = v - before[k]
		}
		rows = append(rows, r)
		c.log.Write([]byte(out.String()))
	}

	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\nshoppers\tcheckouts/s\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%.1f\t\n", r.shoppers, r.rate)
	}
	tw.Flush()
	for _, r := range rows {
		fmt.Fprintf(c.out, "\n%d shoppers — latency per step:\n", r.shoppers)
		report := r.report
		if i := strings.Index(report, "step"); i >= 0 {
			report = report[i:]
		}
		fmt.Fprint(c.out, report)
		fmt.Fprintf(c.out, "CPU per checkout (ms), %d shoppers:", r.shoppers)
		names := make([]string, 0, len(r.cpu))
		for k := range r.cpu {
			names = append(names, k)
		}
		sort.Slice(names, func(i, j int) bool { return r.cpu[names[i]] > r.cpu[names[j]] })
		total := 0.0
		for _, k := range names {
			total += r.cpu[k]
		}
		for _, k := range names {
			if r.placed > 0 {
				fmt.Fprintf(c.out, "  %s %.2f", k, 1000*r.cpu[k]/float64(r.placed))
			}
		}
		if r.placed > 0 {
			fmt.Fprintf(c.out, "  (total %.2f)\n", 1000*total/float64(r.placed))
		}
	}
	return nil
}

// labCPU is the CPU time (seconds, user and system) each of the lab's processes has used so far, by service:
// every instance, Consul, and PostgreSQL with all its backends — and this process, the load generator.
func labCPU(state string) (map[string]float64, error) {
	b, err := os.ReadFile(filepath.Join(state, "lab.json"))
	if err != nil {
		return nil, err
	}
	var st struct {
		ConsulPID   int `json:"consul_pid"`
		PostgresPID int `json:"postgres_pid"`
		Instances   []struct {
			Service string `json:"service"`
			PID     int    `json:"pid"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read lab.json: %w", err)
	}
	out := map[string]float64{"consul": cpuSeconds(st.ConsulPID), "postgres": cpuSeconds(st.PostgresPID),
		"load generator": cpuSeconds(os.Getpid())}
	for _, in := range st.Instances {
		out[in.Service] += cpuSeconds(in.PID)
	}
	// PostgreSQL's backends are the postmaster's children.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == st.PostgresPID {
			out["postgres"] += cpuSeconds(pid)
		}
	}
	return out, nil
}

// procStat is /proc/pid/stat's fields after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func parentOf(pid int) (int, bool) {
	f := procStat(pid)
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// cpuSeconds is a process's user plus system time, in seconds (clock ticks are 1/100 s on Linux).
func cpuSeconds(pid int) float64 {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}
