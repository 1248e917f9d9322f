package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/consulx"
	"shoplab/internal/topology"
)

func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("consul", firstNonEmpty(getenv("CONSUL_HTTP_ADDR"), "127.0.0.1:8500"), "Consul agent address")
	members := fs.Bool("members", false, "also list the cluster's members and fail unless every one is alive")
	topo := fs.String("topology", "", "the topology file: fail unless every service it names has as many passing instances as its replicas")
	replicas := fs.String("replicas", getenv("REPLICAS"), "with --topology: replica counts of this run, e.g. catalog=2 (as make run and the VM lab take them)")
	patroni := fs.Bool("patroni", false, "with --topology: services with a database and two or more replicas keep it in a Patroni cluster "+
		"(the VM lab): fail unless each has one running primary and every replica streaming")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	var expected *topology.Topology
	if *topo != "" {
		t, err := topology.Load(*topo)
		if err != nil {
			return usageError{err.Error()}
		}
		if expected, err = t.WithReplicas(*replicas); err != nil {
			return usageError{err.Error()}
		}
	}
	client, err := consulx.NewClient(consulx.ClientConfig{Address: *addr, Token: getenv("CONSUL_HTTP_TOKEN")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	services, _, err := client.Catalog().Services(q)
	if err != nil {
		return fmt.Errorf("cannot ask Consul at %s: %w (is the lab running? start it with: make run)", *addr, err)
	}
	names := slices.Sorted(maps.Keys(services))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCE\tNODE\tADDRESS\tSTATUS\tCHECKS")
	unhealthy := 0
	passing := map[string]int{}
	for _, name := range names {
		entries, _, err := client.Health().Service(name, "", false, q)
		if err != nil {
			return fmt.Errorf("health of %s: %w", name, err)
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Service.ID < entries[j].Service.ID })
		for _, e := range entries {
			status := e.Checks.AggregatedStatus()
			if status != api.HealthPassing {
				unhealthy++
			} else {
				passing[name]++
			}
			var checks []string
			for _, c := range e.Checks {
				checks = append(checks, c.Name+"="+c.Status)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\n", name, e.Service.ID, e.Node.Node, e.Service.Address, e.Service.Port, status, strings.Join(checks, ", "))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := listIntentions(ctx, client, stdout); err != nil {
		return err
	}
	if *members {
		dead, err := listMembers(client, stdout)
		if err != nil {
			return err
		}
		if dead > 0 {
			return fmt.Errorf("%d Consul member(s) not alive", dead)
		}
	}
	var problems []string
	if expected != nil {
		problems = missingInstances(expected, passing)
		if *patroni {
			pp, err := listPatroni(ctx, client, patroniScopes(expected), stdout)
			if err != nil {
				return err
			}
			problems = append(problems, pp...)
		}
		for _, p := range problems {
			fmt.Fprintln(stdout, "missing:", p)
		}
	}
	if unhealthy > 0 {
		problems = append(problems, fmt.Sprintf("%d instance(s) not passing", unhealthy))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// missingInstances compares what is passing in Consul with what the topology expects: a service with fewer
// passing instances than its replicas (none at all included) is missing some.
func missingInstances(expected *topology.Topology, passing map[string]int) []string {
	var out []string
	for _, s := range expected.Services {
		if got := passing[s.Name]; got < s.Replicas {
			out = append(out, fmt.Sprintf("%s: %d of %d expected instances passing", s.Name, got, s.Replicas))
		}
	}
	return out
}

// patroniScopes are the Patroni clusters the topology implies, with their member counts: <service>-db for
// every service with a database and two or more replicas (provisioning/lab.rb plans the same).
func patroniScopes(t *topology.Topology) map[string]int {
	out := map[string]int{}
	for _, s := range t.Services {
		if s.Database && s.Replicas >= 2 {
			out[s.Name+"-db"] = s.Replicas
		}
	}
	return out
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// listMembers prints the LAN members of the cluster and returns how many are not alive.
func listMembers(client *api.Client, out io.Writer) (int, error) {
	ms, err := client.Agent().Members(false)
	if err != nil {
		return 0, fmt.Errorf("list members: %w", err)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEMBER\tADDRESS\tSTATUS\tROLE")
	dead := 0
	for _, m := range ms {
		// Serf member states: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
		status := [...]string{"none", "alive", "leaving", "left", "failed"}[min(max(m.Status, 0), 4)]
		if status != "alive" {
			dead++
		}
		fmt.Fprintf(tw, "%s\t%s:%d\t%s\t%s\n", m.Name, m.Addr, m.Port, status, m.Tags["role"])
	}
	return dead, tw.Flush()
}

// listIntentions prints the service mesh's intentions: who may call whom.
func listIntentions(ctx context.Context, client *api.Client, out io.Writer) error {
	ins, err := consulx.ListIntentions(ctx, client)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nINTENTION\tACTION\tDESCRIPTION")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s → %s\t%s\t%s\n", in.Source, in.Destination, in.Action, in.Description)
	}
	if len(ins) == 0 {
		fmt.Fprintln(tw, "(none: every call is allowed or denied by the ACL default policy)\t\t")
	}
	return tw.Flush()
}
