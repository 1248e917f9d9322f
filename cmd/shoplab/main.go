// Command shoplab runs and checks the shop:
//
//	shoplab lab      start the whole shop on this machine (what make run calls)
//	shoplab status   a table of services, instances and check states from Consul
//	shoplab smoke    walk the API.md journey through the front; exit non-zero at the first failure
//	shoplab load     bounded load of weighted journeys, then latency percentiles per step
//	shoplab admin    the operator's commands: grant or revoke the admin role, list admins, mint a token
//	shoplab bench    the front against nginx, then checkouts per second (make bench)
//	shoplab topology names, ports and callers from provisioning/topology.yml, for make and the lab's scripts
//	shoplab prometheus-config, prometheus-sd, consul-metrics   the VM lab's monitoring: Prometheus' files,
//	                 Consul's catalog for it, each VM's Consul agent metrics
//	shoplab patroni-tags   a Patroni member's registration in Consul kept true to its role (database VMs)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil:
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "shoplab:", err)
		os.Exit(2)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "shoplab:", err)
		os.Exit(1)
	}
}

// usageError is a command line the tool cannot run.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: shoplab <command> [flags]

commands:
  lab      start the whole shop on this machine: Consul, PostgreSQL and every service (make run)
  status   show every service's instances and their Consul checks
  smoke    walk the API.md journey through the front and stop at the first failure
  load     send bounded load of weighted journeys through the front and report latencies
  admin    grant or revoke the admin role, list the admins, print an admin's token (the local lab)
  bench    measure the front against nginx (wrk), then checkouts per second through a lab (make bench)
  topology print the services (names), a service's port (port NAME) or its callers (callers NAME)
  prometheus-config   render Prometheus' configuration and rules into a directory (the VM lab's monitor-1)
  prometheus-sd       serve the local Consul agent's catalog to Prometheus' HTTP discovery (monitor-1)
  consul-metrics      serve the local Consul agent's own metrics off its loopback (every VM of the lab)
  patroni-tags        keep this Patroni member's tags in Consul true to its role (the lab's database VMs)

Run "shoplab <command> -h" for a command's flags.`

// commands maps each command to what runs it; bench-proxy is started by bench and not listed in usage.
var commands = map[string]func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error{
	"lab":               runLab,
	"status":            runStatus,
	"smoke":             runSmoke,
	"load":              runLoad,
	"admin":             runAdmin,
	"bench":             runBench,
	"topology":          runTopology,
	"prometheus-config": runPrometheusConfig,
	"prometheus-sd":     runPrometheusSD,
	"consul-metrics":    runConsulMetrics,
	"patroni-tags":      runPatroniTags,
	"bench-proxy":       runBenchProxy,
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	if runCommand, ok := commands[cmd]; ok {
		return runCommand(ctx, rest, getenv, stdout, stderr)
	}
	fmt.Fprintln(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// parseFlags parses a command's flags; bad flags and stray arguments are usage errors.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	if err := parseFlagsThenArgs(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// parseFlagsThenArgs parses a command's flags and leaves its arguments in fs.Args(); bad flags are usage errors.
func parseFlagsThenArgs(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
