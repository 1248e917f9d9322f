// Package topology reads provisioning/topology.yml, the one file that names every service, its port, its
// replica count, whether the front routes it, whether it owns a database, whom it calls and who may call its
// internal routes. Every program is built with the file (Default): a service's default port and its callers
// come from it, as do the labs' instances and the mesh's intentions.
package topology

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"shoplab"
)

// Entry is the service every outside request comes in through: the storefront and gateway. The topology must
// have it; nothing calls it, and it alone passes on a client's address (X-Forwarded-For).
const Entry = "front"

// Default is provisioning/topology.yml as built into this program. It panics if the file is invalid, which
// TestDefault and every service's own tests would show before anything ships.
var Default = sync.OnceValue(func() *Topology {
	t, err := Parse(shoplab.TopologyYAML)
	if err != nil {
		panic(err)
	}
	return t
})

// Service is one service of the shop.
type Service struct {
	Name     string   `yaml:"name"`
	Port     int      `yaml:"port"`
	Replicas int      `yaml:"replicas"`
	Public   bool     `yaml:"public"`
	Database bool     `yaml:"database"`
	Calls    []string `yaml:"calls"`    // the services it calls: the mesh's intentions allow exactly these
	Internal []string `yaml:"internal"` // the callers its internal routes admit: a subset of its callers
}

// Topology is the whole file.
type Topology struct {
	Services []Service `yaml:"services"`
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// MaxReplicas bounds replicas per service (ports on one machine step by 100).
const MaxReplicas = 9

// Load reads and checks the file at path.
func Load(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return Parse(b)
}

// Parse reads and checks a topology document; unknown keys are errors.
func Parse(b []byte) (*Topology, error) {
	var t Topology
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return &t, t.Validate()
}

// Validate reports the first problem: a bad or repeated name, a port out of range or shared, a replica
// count out of range, a missing entry, a call to an unknown service, to itself or to the entry, or an internal
// caller that does not call the service.
func (t *Topology) Validate() error {
	if len(t.Services) == 0 {
		return errors.New("topology: no services")
	}
	names := map[string]bool{}
	ports := map[int]string{}
	for _, s := range t.Services {
		switch {
		case !nameRe.MatchString(s.Name):
			return fmt.Errorf("topology: service name %q: want lower-case letters, digits and dashes", s.Name)
		case names[s.Name]:
			return fmt.Errorf("topology: service %s appears twice", s.Name)
		case s.Port < 1024 || s.Port+100*(MaxReplicas-1) > 65535:
			return fmt.Errorf("topology: %s: port %d out of range", s.Name, s.Port)
		case s.Replicas < 1 || s.Replicas > MaxReplicas:
			return fmt.Errorf("topology: %s: replicas %d; want 1 to %d", s.Name, s.Replicas, MaxReplicas)
		}
		names[s.Name] = true
		for i := range MaxReplicas {
			p := s.Port + 100*i
			if other, ok := ports[p]; ok {
				return fmt.Errorf("topology: %s and %s would share port %d", other, s.Name, p)
			}
			ports[p] = s.Name
		}
	}
	if !names[Entry] {
		return fmt.Errorf("topology: the %s is missing", Entry)
	}
	for _, s := range t.Services {
		seen := map[string]bool{}
		for _, c := range s.Calls {
			switch {
			case !names[c]:
				return fmt.Errorf("topology: %s calls %s, which is not a service of the topology", s.Name, c)
			case c == s.Name || c == Entry:
				return fmt.Errorf("topology: %s calls %s: a service never calls itself or the %s", s.Name, c, Entry)
			case seen[c]:
				return fmt.Errorf("topology: %s calls %s twice", s.Name, c)
			}
			seen[c] = true
		}
	}
	for _, s := range t.Services {
		callers := t.Callers(s.Name)
		for i, c := range s.Internal {
			switch {
			case !slices.Contains(callers, c):
				return fmt.Errorf("topology: %s's internal routes admit %s, which does not call it", s.Name, c)
			case slices.Contains(s.Internal[:i], c):
				return fmt.Errorf("topology: %s's internal routes admit %s twice", s.Name, c)
			}
		}
	}
	return nil
}

// Callers lists the services that call name, in the file's order.
func (t *Topology) Callers(name string) []string {
	var out []string
	for _, s := range t.Services {
		if slices.Contains(s.Calls, name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// Needs lists the services name calls, directly or through the services it calls, in the file's order (the
// order to start them in): what must run for name to work.
func (t *Topology) Needs(name string) []string {
	need := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		s, _ := t.Service(n)
		for _, c := range s.Calls {
			if !need[c] {
				need[c] = true
				visit(c)
			}
		}
	}
	visit(name)
	var out []string
	for _, s := range t.Services {
		if need[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// InternalCallers lists the callers name's internal routes admit (its "internal" in the file).
func (t *Topology) InternalCallers(name string) []string {
	s, _ := t.Service(name)
	return slices.Clone(s.Internal)
}

// Port is the named service's port, or an error naming the service the topology lacks.
func (t *Topology) Port(name string) (int, error) {
	s, ok := t.Service(name)
	if !ok {
		return 0, fmt.Errorf("topology: no service named %s", name)
	}
	return s.Port, nil
}

// Calls maps every service to the services it calls.
func (t *Topology) Calls() map[string][]string {
	out := map[string][]string{}
	for _, s := range t.Services {
		out[s.Name] = append([]string(nil), s.Calls...)
	}
	return out
}

// Service returns the named service.
func (t *Topology) Service(name string) (Service, bool) {
	for _, s := range t.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// WithReplicas returns a copy with replica counts overridden by spec ("catalog=2,orders=3"), for one run
// without editing the file.
func (t *Topology) WithReplicas(spec string) (*Topology, error) {
	out := &Topology{Services: append([]Service(nil), t.Services...)}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, n, ok := strings.Cut(part, "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			return nil, fmt.Errorf("replicas %q: want service=count pairs such as catalog=2,orders=2", part)
		}
		found := false
		for i := range out.Services {
			if out.Services[i].Name == name {
				out.Services[i].Replicas, found = count, true
			}
		}
		if !found {
			return nil, fmt.Errorf("replicas %q: no service named %s in the topology", part, name)
		}
	}
	return out, out.Validate()
}

// Instance is one replica of a service.
type Instance struct {
	Service Service
	Index   int // 1-based
}

// ID is the instance's id: name-index.
func (i Instance) ID() string { return fmt.Sprintf("%s-%d", i.Service.Name, i.Index) }

// LocalPort is where the instance listens when every instance shares one machine.
func (i Instance) LocalPort() int { return i.Service.Port + 100*(i.Index-1) }

// Instances lists every replica of every service, in the file's order (the order to start them in).
func (t *Topology) Instances() []Instance {
	var out []Instance
	for _, s := range t.Services {
		for i := 1; i <= s.Replicas; i++ {
			out = append(out, Instance{Service: s, Index: i})
		}
	}
	return out
}
