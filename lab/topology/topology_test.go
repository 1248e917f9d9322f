package topology

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"shoplab/lab/proc"
)

func TestRepositoryTopology(t *testing.T) {
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	topo, err := Load(filepath.Join(root, "provisioning", "topology.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"auth": true, "catalog": true, "cart": true, "orders": true, "payments": false, "front": false}
	for name, public := range want {
		s, ok := topo.Service(name)
		if !ok || s.Public != public {
			t.Errorf("%s: got %+v, found %v; want public=%v", name, s, ok, public)
		}
	}
	if s, _ := topo.Service("front"); s.Database {
		t.Error("front: got a database; want none")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown key", "services:\n  - name: front\n    port: 8080\n    replicas: 1\n    colour: red\n", "colour"},
		{"bad name", "services:\n  - name: Front\n    port: 8080\n    replicas: 1\n", "name"},
		{"no front", "services:\n  - name: auth\n    port: 8081\n    replicas: 1\n", "front"},
		{"zero replicas", "services:\n  - name: front\n    port: 8080\n    replicas: 0\n", "replicas"},
		{"shared port", "services:\n  - name: front\n    port: 8080\n    replicas: 1\n  - name: auth\n    port: 8180\n    replicas: 1\n", "share port"},
		{"twice", "services:\n  - name: front\n    port: 8080\n    replicas: 1\n  - name: front\n    port: 8081\n    replicas: 1\n", "twice"},
	}
	for _, tc := range tests {
		if _, err := Parse([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestWithReplicas(t *testing.T) {
	topo, err := Parse([]byte("services:\n  - name: catalog\n    port: 8082\n    replicas: 1\n  - name: front\n    port: 8080\n    replicas: 1\n"))
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
	if got := strings.Join(ids, " "); got != "catalog-1:8082 catalog-2:8182 front-1:8080" {
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
