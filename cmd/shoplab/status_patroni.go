package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
)

// patroniPrefix is where the VM lab's Patroni clusters keep their state in Consul's KV (provisioning/lib.sh,
// PATRONI_NAMESPACE): shoplab/<service>-db/{leader,members/<node>,sync,...}.
const patroniPrefix = "shoplab/"

// maxReplicaLag is how far (bytes of WAL) a replica that is not the synchronous standby may trail the leader
// and still count as streaming.
const maxReplicaLag = 16 << 20

// patroniMember is what Patroni writes of a member into shoplab/<scope>/members/<node>.
type patroniMember struct {
	Role  string `json:"role"`
	State string `json:"state"`
	XLog  int64  `json:"xlog_location"`
}

// patroniCluster is one cluster as its keys in Consul show it.
type patroniCluster struct {
	scope   string
	leader  string
	members map[string]patroniMember
	sync    []string // the synchronous standbys
}

// readPatroniCluster reads the keys of scope.
func readPatroniCluster(ctx context.Context, client *api.Client, scope string) (*patroniCluster, error) {
	pairs, _, err := client.KV().List(patroniPrefix+scope+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read the Patroni keys of %s: %w", scope, err)
	}
	c := &patroniCluster{scope: scope, members: map[string]patroniMember{}}
	for _, p := range pairs {
		key := strings.TrimPrefix(p.Key, patroniPrefix+scope+"/")
		switch {
		case key == "leader":
			c.leader = string(p.Value)
		case key == "sync":
			var s struct {
				Standby string `json:"sync_standby"`
			}
			if json.Unmarshal(p.Value, &s) == nil && s.Standby != "" {
				c.sync = strings.Split(s.Standby, ",")
			}
		case strings.HasPrefix(key, "members/"):
			var m patroniMember
			if err := json.Unmarshal(p.Value, &m); err != nil {
				return nil, fmt.Errorf("member %s of %s: %w", path.Base(key), scope, err)
			}
			c.members[path.Base(key)] = m
		}
	}
	return c, nil
}

// problems compares the cluster with what a healthy one of want members looks like: one leader running as
// the primary, every member present and running, each replica streaming (the synchronous standby, or
// within maxReplicaLag of the leader), and a synchronous standby whenever there is a replica.
func (c *patroniCluster) problems(want int) []string {
	var out []string
	lead, ok := c.members[c.leader]
	switch {
	case c.leader == "":
		out = append(out, c.scope+": no leader")
	case !ok:
		out = append(out, fmt.Sprintf("%s: the leader %s is not a member", c.scope, c.leader))
	case !isPrimaryRole(lead.Role) || lead.State != "running":
		out = append(out, fmt.Sprintf("%s: the leader %s is %s, %s; want a running primary", c.scope, c.leader, lead.Role, lead.State))
	}
	if len(c.members) < want {
		out = append(out, fmt.Sprintf("%s: %d of %d members", c.scope, len(c.members), want))
	}
	for _, name := range c.names() {
		m := c.members[name]
		if name == c.leader {
			continue
		}
		switch {
		case m.Role != "replica" || m.State != "running":
			out = append(out, fmt.Sprintf("%s: member %s is %s, %s; want a running replica", c.scope, name, m.Role, m.State))
		case !slices.Contains(c.sync, name) && (lead.XLog-m.XLog > maxReplicaLag):
			out = append(out, fmt.Sprintf("%s: replica %s trails the leader by %d bytes", c.scope, name, lead.XLog-m.XLog))
		}
	}
	if len(c.members) > 1 && len(c.sync) == 0 {
		out = append(out, c.scope+": no synchronous standby")
	}
	return out
}

func (c *patroniCluster) names() []string { return slices.Sorted(maps.Keys(c.members)) }

func isPrimaryRole(role string) bool { return role == "master" || role == "primary" }

// listPatroni prints the Patroni clusters of scopes (each wanting the given number of members) and returns
// what is wrong with them.
func listPatroni(ctx context.Context, client *api.Client, scopes map[string]int, out io.Writer) ([]string, error) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDATABASE\tMEMBER\tROLE\tSTATE\tLAG\tSYNC")
	var problems []string
	for _, scope := range slices.Sorted(maps.Keys(scopes)) {
		c, err := readPatroniCluster(ctx, client, scope)
		if err != nil {
			return nil, err
		}
		lead := c.members[c.leader]
		for _, name := range c.names() {
			m := c.members[name]
			role, lag, sync := m.Role, "-", ""
			if name == c.leader {
				role = "leader"
			} else {
				lag = fmt.Sprintf("%d", max(lead.XLog-m.XLog, 0))
			}
			if slices.Contains(c.sync, name) {
				sync = "sync"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", scope, name, role, m.State, lag, sync)
		}
		if len(c.members) == 0 {
			fmt.Fprintf(tw, "%s\t(no members)\t\t\t\t\n", scope)
		}
		problems = append(problems, c.problems(scopes[scope])...)
	}
	return problems, tw.Flush()
}
