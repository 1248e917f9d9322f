// Package shoplab holds what the whole repository reads as data: provisioning/topology.yml, the one list of
// the shop's services, built into every program that needs it (see internal/topology).
package shoplab

import _ "embed" // the topology file

// TopologyYAML is provisioning/topology.yml as it was when the program was built.
//
//go:embed provisioning/topology.yml
var TopologyYAML []byte
