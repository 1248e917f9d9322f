package shoplab_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"shoplab/internal/topology"
)

// TestTopologyIsTheOnlyList: provisioning/topology.yml is the one list of the shop's services, their ports and
// their callers. Every service has its directory under services/ and nothing else does; and no tracked file
// but the topology itself, the prose (docs/, *.md) and this file's examples writes, outside its comments, a port of the topology (an
// instance's or its operations port, first replicas included), a list of three or more services, or the
// callers of an internal route. Programs read topology.Default; the Makefile and scripts ask `shoplab topology`.
func TestTopologyIsTheOnlyList(t *testing.T) {
	topo := topology.Default()
	var names []string
	for _, s := range topo.Services {
		names = append(names, s.Name)
	}

	dirs, err := filepath.Glob(filepath.Join("services", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dirs {
		got = append(got, filepath.Base(filepath.Dir(d)))
	}
	if want := slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
		t.Errorf("services/: got %v; want the topology's %v", got, want)
	}

	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files (the test reads the tracked files): %v", err)
	}
	var problems []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f == "provisioning/topology.yml" || f == "topology_test.go" || strings.HasPrefix(f, "docs/") || strings.HasSuffix(f, ".md") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil || bytes.IndexByte(b, 0) >= 0 {
			continue // gone from the work tree, or binary
		}
		for _, p := range listed(topo, names, b) {
			problems = append(problems, f+":"+p)
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Log("read them from provisioning/topology.yml instead: topology.Default() in Go, `bin/shoplab topology names|port NAME|callers NAME` in make and shell")
	}
}

// TestTopologyCheckFinds: the check above finds each kind of second list (it would pass on any tree otherwise).
func TestTopologyCheckFinds(t *testing.T) {
	topo, err := topology.Parse([]byte(`services:
  - name: front
    port: 7080
    replicas: 1
    calls: [auth, orders, cart]
  - name: auth
    port: 7081
    replicas: 1
    internal: [cart]
  - name: orders
    port: 7084
    replicas: 1
  - name: cart
    port: 7083
    replicas: 1
    calls: [auth]
`))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"front", "auth", "orders", "cart"}
	tests := []struct{ line, want string }{
		{`	rt, err := app.Boot(ctx, "x", "127.0.0.1:7081", getenv)`, "port 7081 (auth)"},
		{`for p in 8100 8181 9000 7180 ; do`, "port 7180 (front)"},
		{`  out=$(curl http://$pay:8084/health/ready)`, "port 8084 (orders)"},
		{`SERVICES=(auth orders cart front)`, "a list of services"},
		{`for b in consul auth, cart, orders shoplab; do`, "a list of services"},
		{`	st := testkit.StartStack(t, "auth", "cart", "orders")`, "a list of services"},
		{`	orders := mesh.RequireCaller("orders")`, "the callers of an internal route"},
		{`	port := 70810 + 7081.5`, ""},
		{`// the front calls auth, cart and orders on port 7081`, ""},
		{`# SERVICES=(auth orders cart)`, ""},
		{`	st := testkit.StartStack(t, "auth", "cart")`, ""},
		{`	log.Info("orders calls cart", "port", port)`, ""},
	}
	for _, tc := range tests {
		got := strings.Join(listed(topo, names, []byte(tc.line)), "; ")
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q; want %q", tc.line, got, tc.want)
		}
	}
}

var (
	numberRe = regexp.MustCompile(`[0-9.]+`)
	callerRe = regexp.MustCompile(`RequireCaller\(\s*"`)
)

// listed reports, as "line: what", each line of b outside comments that writes a port of topo, a list of three
// or more of its services (bare, separated by spaces or commas, or quoted anywhere on the line), or an internal
// route's callers.
func listed(topo *topology.Topology, names []string, b []byte) []string {
	ports := map[int]string{}
	for _, s := range topo.Services {
		for i := range 2 {
			ports[s.Port+100*i] = s.Name
			ports[s.Port+100*i+1000] = s.Name // the operations port, as both labs place it
		}
	}
	alt := strings.Join(names, "|")
	bareRe := regexp.MustCompile(`\b(` + alt + `)(?:[ \t]*,?[ \t]+(?:` + alt + `)\b){2,}`)
	quotedRe := regexp.MustCompile(`"(` + alt + `)"`)
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "//") || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "*") {
			continue
		}
		for _, m := range numberRe.FindAllString(line, -1) {
			p, err := strconv.Atoi(m) // a decimal (7081.5, 1.7081) is no port
			if s, ok := ports[p]; ok && err == nil {
				out = append(out, fmt.Sprintf("%d: port %d (%s)", n, p, s))
			}
		}
		quoted := map[string]bool{}
		for _, m := range quotedRe.FindAllStringSubmatch(line, -1) {
			quoted[m[1]] = true
		}
		if m := bareRe.FindString(line); m != "" || len(quoted) >= 3 {
			out = append(out, fmt.Sprintf("%d: a list of services", n))
		}
		if callerRe.MatchString(line) {
			out = append(out, fmt.Sprintf("%d: the callers of an internal route", n))
		}
	}
	return out
}
