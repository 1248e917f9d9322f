package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"shoplab/internal/topology"
	"shoplab/lab/proc"
)

// runTopology answers questions about provisioning/topology.yml for the Makefile and the VM lab's scripts,
// so that no script keeps its own list of services or ports:
//
//	shoplab topology names        every service, one per line, in the file's order
//	shoplab topology port NAME    the service's port
//	shoplab topology callers NAME the services that call it, one per line
func runTopology(_ context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("topology", flag.ContinueOnError)
	file := fs.String("file", repoTopologyFile(), "the topology file (default: this repository's, else the one built in)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: shoplab topology [--file FILE] names | port NAME | callers NAME")
		fs.PrintDefaults()
	}
	if err := parseFlagsThenArgs(fs, args, stderr); err != nil {
		return err
	}
	t := topology.Default()
	if *file != "" {
		var err error
		if t, err = topology.Load(*file); err != nil {
			return err
		}
	}
	q := fs.Args()
	switch {
	case len(q) == 1 && q[0] == "names":
		for _, s := range t.Services {
			fmt.Fprintln(stdout, s.Name)
		}
	case len(q) == 2 && q[0] == "port":
		port, err := t.Port(q[1])
		if err != nil {
			return usageError{err.Error()}
		}
		fmt.Fprintln(stdout, port)
	case len(q) == 2 && q[0] == "callers":
		if _, ok := t.Service(q[1]); !ok {
			return usageError{fmt.Sprintf("topology: no service named %s", q[1])}
		}
		for _, c := range t.Callers(q[1]) {
			fmt.Fprintln(stdout, c)
		}
	default:
		return usageError{fmt.Sprintf("topology: want names, port NAME or callers NAME; got %q", strings.Join(q, " "))}
	}
	return nil
}

// repoTopologyFile is this repository's provisioning/topology.yml when the command runs inside it (an edit
// counts before the next build), or "" for the file built in.
func repoTopologyFile() string {
	root, err := proc.RepoRoot()
	if err != nil {
		return ""
	}
	p := filepath.Join(root, "provisioning", "topology.yml")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// defaultFront is the front's URL on this machine: its port in the topology, on loopback.
func defaultFront() string {
	port, _ := topology.Default().Port(topology.Entry)
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}
