package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"shoplab/lab/proc"
)

// runBench is "shoplab bench" (make bench): the front against nginx proxying the same backend, then
// checkouts per second through a lab like make run's. It prints tables; it never passes or fails on a number.
func runBench(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	root, err := proc.RepoRoot()
	if err != nil {
		root, _ = os.Getwd()
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	part := fs.String("part", "all", "what to measure: gateway, checkout or all")
	bin := fs.String("bin", filepath.Join(root, "bin"), "directory with the service binaries (make build)")
	topo := fs.String("topology", filepath.Join(root, "provisioning", "topology.yml"), "the topology file (checkout part)")
	rounds := fs.Int("rounds", 3, "gateway: wrk rounds per contender, interleaved (1 to 20)")
	duration := fs.Duration("duration", 10*time.Second, "gateway: length of each wrk round and fixed-rate run (1s to 2m)")
	conns := fs.Int("connections", 32, "gateway: wrk connections (1 to 1024)")
	shoppers := fs.String("shoppers", "4,16,64", "checkout: numbers of shoppers, one run each")
	checkoutFor := fs.Duration("checkout-duration", 20*time.Second, "checkout: length of each run (1s to 10m)")
	var compare envList
	fs.Var(&compare, "compare-env", "gateway: also run a second front with this variable (KEY=VALUE; repeatable), as one more contender")
	offset := fs.Int("port-offset", 20000, "checkout: the lab's port offset (make run's ports plus this)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *part != "gateway" && *part != "checkout" && *part != "all":
		return usageError{"--part must be gateway, checkout or all"}
	case *rounds < 1 || *rounds > 20:
		return usageError{"--rounds must be from 1 to 20"}
	case *duration < time.Second || *duration > 2*time.Minute:
		return usageError{"--duration must be from 1s to 2m"}
	case *conns < 1 || *conns > 1024:
		return usageError{"--connections must be from 1 to 1024"}
	case *checkoutFor < time.Second || *checkoutFor > 10*time.Minute:
		return usageError{"--checkout-duration must be from 1s to 10m"}
	case *offset < 1 || *offset > 50000:
		return usageError{"--port-offset must be from 1 to 50000"}
	}
	var counts []int
	for _, s := range strings.Split(*shoppers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 512 {
			return usageError{fmt.Sprintf("--shoppers: %q is not a number from 1 to 512", s)}
		}
		counts = append(counts, n)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *part != "checkout" {
		wrk, err := lookTool("wrk", "wrk")
		if err != nil {
			return err
		}
		nginx, err := lookTool("nginx", "nginx")
		if err != nil {
			return err
		}
		g := &gatewayBench{bin: *bin, wrk: wrk, nginx: nginx, rounds: *rounds, duration: *duration, conns: *conns, compareEnv: compare, out: stdout, log: stderr}
		if err := g.run(ctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	if *part != "gateway" {
		c := &checkoutBench{bin: *bin, topology: *topo, shoppers: counts, duration: *checkoutFor, portOffset: *offset, out: stdout, log: stderr}
		if err := c.run(ctx); err != nil {
			return fmt.Errorf("checkout: %w", err)
		}
	}
	return nil
}

// envList is a repeatable KEY=VALUE flag.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" || strings.ContainsAny(k, " \t") {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}
