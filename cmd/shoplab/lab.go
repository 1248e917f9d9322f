package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"shoplab/internal/topology"
	"shoplab/lab"
	"shoplab/lab/proc"
)

func runLab(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root, err := proc.RepoRoot()
	if err != nil {
		root, _ = os.Getwd()
	}
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	state := fs.String("state", filepath.Join(root, ".lab"), "state directory: PostgreSQL data, logs, secrets")
	bin := fs.String("bin", filepath.Join(root, "bin"), "directory with the service binaries (make build)")
	topo := fs.String("topology", filepath.Join(root, "provisioning", "topology.yml"), "the topology file")
	replicas := fs.String("replicas", getenv("REPLICAS"), "extra replicas for this run, e.g. catalog=2,orders=2")
	offset := fs.Int("port-offset", 0, fmt.Sprintf("shift every port (Consul %d, PostgreSQL %d, each service's port in the topology and that plus %d) by this much", lab.ConsulPort, lab.PostgresPort, lab.OpsPortStep))
	logLevel := fs.String("log-level", "info", "services' log level")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *offset < 0 || *offset > 50000 {
		return usageError{"--port-offset must be from 0 to 50000"}
	}
	t, err := topology.Load(*topo)
	if err != nil {
		return err
	}
	if t, err = t.WithReplicas(*replicas); err != nil {
		return usageError{err.Error()}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := lab.Config{State: *state, Bin: *bin, Topology: t, PortOffset: *offset, Out: stdout, LogLevel: *logLevel,
		PrometheusSource: filepath.Join(filepath.Dir(*topo), "prometheus")}
	l, err := lab.Start(ctx, cfg)
	if err != nil {
		return err
	}
	front := cfg.FrontURL()
	fmt.Fprintf(stdout, `
shoplab is ready: %d instances passing in Consul after %.1fs.

  storefront   %s/
  status       %s/status
  Consul UI    %s
%s  logs         %s

Press Ctrl-C to stop (data is kept; make clean-data wipes it).
`, len(l.Instances()), l.Ready().Seconds(), front, front, cfg.ConsulUIURL(), prometheusLine(l.PrometheusURL()), filepath.Join(*state, "logs"))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nshoplab: stopping (services deregister, then PostgreSQL and Consul stop)…")
	if err := l.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Fprintln(stdout, "shoplab: stopped.")
	return nil
}

// prometheusLine is the banner's Prometheus line, or nothing when the lab runs none.
func prometheusLine(url string) string {
	if url == "" {
		return ""
	}
	return fmt.Sprintf("  Prometheus   %s/targets\n", url)
}
