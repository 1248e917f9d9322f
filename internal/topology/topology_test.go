package topology

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefault: the topology built in is the repository's file, and its entry is the storefront: not routed by
// itself, without a database, calling something.
func TestDefault(t *testing.T) {
	file, err := Load(filepath.Join("..", "..", "provisioning", "topology.yml")) // go test runs in this directory
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(Default()), fmt.Sprint(file); got != want {
		t.Fatalf("built in: got %s; want the file's %s", got, want)
	}
	entry, _ := Default().Service(Entry)
	if entry.Public || entry.Database || len(entry.Calls) == 0 {
		t.Errorf("%s: got %+v; want not routed, no database, some calls", Entry, entry)
	}
}

const doc = `services:
  - name: keys
    port: 7081
    replicas: 1
    internal: [basket]
  - name: shelf
    port: 7082
    replicas: 1
    calls: [keys]
  - name: basket
    port: 7083
    replicas: 1
    calls: [shelf, keys]
  - name: front
    port: 7080
    replicas: 1
    calls: [basket]
`

func TestRelations(t *testing.T) {
	topo, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  []string
		want string
	}{
		{"Callers(keys)", topo.Callers("keys"), "shelf basket"},
		{"Callers(front)", topo.Callers("front"), ""},
		{"Needs(front)", topo.Needs("front"), "keys shelf basket"},
		{"Needs(basket)", topo.Needs("basket"), "keys shelf"},
		{"Needs(keys)", topo.Needs("keys"), ""},
		{"InternalCallers(keys)", topo.InternalCallers("keys"), "basket"},
		{"InternalCallers(shelf)", topo.InternalCallers("shelf"), ""},
	}
	for _, tc := range tests {
		if got := strings.Join(tc.got, " "); got != tc.want {
			t.Errorf("%s: got %q; want %q", tc.name, got, tc.want)
		}
	}
	if p, err := topo.Port("basket"); p != 7083 || err != nil {
		t.Errorf("Port(basket): got %d, %v; want 7083", p, err)
	}
	if _, err := topo.Port("nothing"); err == nil {
		t.Error("Port(nothing): got nil; want an error")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown key", "services:\n  - name: front\n    port: 7080\n    replicas: 1\n    colour: red\n", "colour"},
		{"bad name", "services:\n  - name: Front\n    port: 7080\n    replicas: 1\n", "name"},
		{"no front", "services:\n  - name: auth\n    port: 7081\n    replicas: 1\n", "front"},
		{"zero replicas", "services:\n  - name: front\n    port: 7080\n    replicas: 0\n", "replicas"},
		{"shared port", "services:\n  - name: front\n    port: 7080\n    replicas: 1\n  - name: auth\n    port: 7180\n    replicas: 1\n", "share port"},
		{"internal caller that does not call", strings.Replace(doc, "internal: [basket]", "internal: [front]", 1), "does not call"},
		{"internal caller twice", strings.Replace(doc, "internal: [basket]", "internal: [basket, basket]", 1), "twice"},
		{"calls the front", strings.Replace(doc, "calls: [keys]", "calls: [front]", 1), "never calls"},
		{"twice", "services:\n  - name: front\n    port: 7080\n    replicas: 1\n  - name: front\n    port: 7081\n    replicas: 1\n", "twice"},
	}
	for _, tc := range tests {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestWithReplicas(t *testing.T) {
	topo, err := Parse([]byte("services:\n  - name: catalog\n    port: 7082\n    replicas: 1\n  - name: front\n    port: 7080\n    replicas: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	two, err := topo.WithReplicas("catalog=2")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range two.Instances() {
		ids = append(ids, fmt.Sprintf("%s:%d", in.ID(), in.LocalPort()))
	}
	if got := strings.Join(ids, " "); got != "catalog-1:7082 catalog-2:7182 front-1:7080" {
		t.Fatalf("instances: got %s", got)
	}
	if s, _ := topo.Service("catalog"); s.Replicas != 1 {
		t.Fatal("WithReplicas changed the original")
	}
	for _, bad := range []string{"catalog", "catalog=x", "nothing=2", "catalog=10"} {
		if _, err := topo.WithReplicas(bad); err == nil {
			t.Errorf("WithReplicas(%q): got nil; want an error", bad)
		}
	}
}
