// Package provisioning holds the VM lab's scripts, units and Ruby plan; these tests are its CI checks, run
// without VMs: the Vagrantfile validates (with and without the libvirt provider), the plan gives every VM a
// unique address in range, the Packer template is formatted and valid with the pinned Packer, every rendered
// Consul configuration passes `consul validate`, and every unit passes `systemd-analyze verify`.
package provisioning

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"shoplab/internal/consulx"
	"shoplab/internal/topology"
	"shoplab/lab/consulagent"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func root(t *testing.T) string {
	t.Helper()
	r, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func need(t *testing.T, tool, hint string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	testkit.Need(t, tool, err, hint)
	return p
}

// run runs a command in dir with extra environment and returns its combined output.
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type plannedVM struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	IP       string `json:"ip"`
	Service  string `json:"service"`
	Index    int    `json:"index"`
	Database bool   `json:"database"`
	DBHost   string `json:"db_host"`
	Patroni  bool   `json:"patroni"`
}

// allAt is a REPLICAS value giving every service of the topology n replicas.
func allAt(n int) string {
	var parts []string
	for _, s := range topology.Default().Services {
		parts = append(parts, fmt.Sprintf("%s=%d", s.Name, n))
	}
	return strings.Join(parts, ",")
}

func plan(t *testing.T, env ...string) []plannedVM {
	t.Helper()
	need(t, "ruby", "install it with: sudo apt-get install -y vagrant (it brings Ruby)")
	out, err := run(t, root(t), env, "ruby", "provisioning/lab.rb")
	if err != nil {
		t.Fatalf("ruby provisioning/lab.rb %v: %v\n%s", env, err, out)
	}
	var p struct {
		Network string      `json:"network"`
		VMs     []plannedVM `json:"vms"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan is not JSON: %v\n%s", err, out)
	}
	return p.VMs
}

// TestPlanAddresses: every VM of the plan gets a unique address inside 192.168.56.0/21 (not the host's .1,
// not the network or broadcast address), for the default topology and the largest settings.
func TestPlanAddresses(t *testing.T) {
	lab := netip.MustParsePrefix("192.168.56.0/21")
	topo, err := topology.Load(filepath.Join(root(t), "provisioning", "topology.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range [][]string{
		nil,
		{"CONSUL_SERVERS=3", "REPLICAS=catalog=2,orders=2"},
		{"CONSUL_SERVERS=5", "REPLICAS=" + allAt(topology.MaxReplicas)},
	} {
		t.Run(strings.Join(env, " "), func(t *testing.T) {
			vms := plan(t, env...)
			seen := map[string]string{}
			perService := map[string]int{}
			primary := map[string]string{}
			for _, vm := range vms {
				ip, err := netip.ParseAddr(vm.IP)
				switch {
				case err != nil || !lab.Contains(ip):
					t.Fatalf("%s: got %s; want an address in %s", vm.Name, vm.IP, lab)
				case vm.IP == "192.168.56.1" || vm.IP == "192.168.56.0" || vm.IP == "192.168.63.255":
					t.Fatalf("%s: got the reserved address %s", vm.Name, vm.IP)
				case seen[vm.IP] != "":
					t.Fatalf("%s and %s: both got %s; want unique addresses", seen[vm.IP], vm.Name, vm.IP)
				}
				seen[vm.IP] = vm.Name
				if vm.Service != "" {
					perService[vm.Service]++
					if vm.Index == 1 {
						primary[vm.Service] = vm.IP
					}
				}
			}
			for _, vm := range vms {
				want := primary[vm.Service] // one replica: the database on its VM
				if perService[vm.Service] >= 2 {
					want = "primary." + vm.Service + "-db.service.consul" // a Patroni cluster's primary, found in Consul
				}
				if vm.Database && (vm.DBHost != want || vm.Patroni != (perService[vm.Service] >= 2)) {
					t.Fatalf("%s: database host %s (Patroni %v); want %s", vm.Name, vm.DBHost, vm.Patroni, want)
				}
			}
			for _, s := range topo.Services {
				if perService[s.Name] < 1 {
					t.Fatalf("service %s: got no VM", s.Name)
				}
			}
			if last := vms[len(vms)-1]; last.Name != "monitor-1" || last.Role != "monitor" || last.Service != "" {
				t.Fatalf("last VM: got %s (role %s, service %q); want monitor-1, the monitor", last.Name, last.Role, last.Service)
			}
		})
	}
	for _, vm := range plan(t, "SHOPLAB_MONITOR=0") {
		if vm.Role == "monitor" {
			t.Fatalf("SHOPLAB_MONITOR=0: got %s in the plan; want no monitor", vm.Name)
		}
	}
	for _, bad := range [][]string{{"CONSUL_SERVERS=2"}, {"CONSUL_SERVERS=7"}, {"REPLICAS=catalog=10"}, {"REPLICAS=nothing=2"}, {"SHOPLAB_VM_MEMORY=12"}} {
		out, err := run(t, root(t), bad, "ruby", "provisioning/lab.rb")
		if err == nil || !strings.Contains(out, "shoplab: ") {
			t.Errorf("plan with %v: got %v, %q; want a refusal with a message", bad, err, out)
		}
	}
}

// TestVagrantfile: `vagrant validate` passes without providers and with the libvirt provider, and a bad
// setting stops the Vagrantfile with a message.
func TestVagrantfile(t *testing.T) {
	vagrant := need(t, "vagrant", "install it with: sudo apt-get install -y --no-install-recommends vagrant vagrant-libvirt")
	env := []string{"VAGRANT_HOME=" + t.TempDir(), "SHOPLAB_LAB_DIR=" + t.TempDir(), "VAGRANT_CHECKPOINT_DISABLE=1"}
	if out, err := run(t, root(t), env, vagrant, "plugin", "list"); err != nil || !strings.Contains(out, "vagrant-libvirt") {
		testkit.Need(t, "vagrant-libvirt", fmt.Errorf("vagrant plugin list: %v %s", err, out), "install it with: sudo apt-get install -y --no-install-recommends vagrant-libvirt")
	}
	for _, c := range []struct {
		name string
		env  []string
		args []string
	}{
		{"no provider", nil, []string{"validate", "--ignore-provider"}},
		{"libvirt", []string{"VAGRANT_DEFAULT_PROVIDER=libvirt"}, []string{"validate"}},
		{"libvirt under qemu, direct kernel boot", []string{"VAGRANT_DEFAULT_PROVIDER=libvirt", "SHOPLAB_LIBVIRT_DRIVER=qemu",
			"SHOPLAB_LIBVIRT_KERNEL=/boot/vmlinuz", "SHOPLAB_LIBVIRT_INITRD=/boot/initrd.img", "SHOPLAB_BOX=shoplab/debian12"}, []string{"validate"}},
		{"three servers, two catalogs and orders (make vm-test)", []string{"CONSUL_SERVERS=3", "REPLICAS=catalog=2,orders=2"}, []string{"validate", "--ignore-provider"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, root(t), append(env, c.env...), vagrant, c.args...)
			if err != nil || !strings.Contains(out, "Vagrantfile validated successfully") {
				t.Fatalf("vagrant %v: %v\n%s", c.args, err, out)
			}
		})
	}
	out, err := run(t, root(t), append(env, "CONSUL_SERVERS=4"), vagrant, "validate", "--ignore-provider")
	if err == nil || !strings.Contains(out, "CONSUL_SERVERS=4") {
		t.Fatalf("vagrant validate with CONSUL_SERVERS=4: got %v\n%s\nwant a refusal naming the setting", err, out)
	}
}

// packerBinary is the pinned Packer (make packer), never Debian's 1.6.6, which rejects required_plugins.
func packerBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(root(t), "bin", "packer")
	_, err := os.Stat(p)
	testkit.Need(t, "the pinned packer (bin/packer)", err, "build it with: make packer")
	return p
}

// TestPackerTemplate: the template is formatted, and valid with the pinned Packer and plugins, offline.
func TestPackerTemplate(t *testing.T) {
	packer := packerBinary(t)
	dir := filepath.Join(root(t), "packer")
	env := []string{"PACKER_PLUGIN_PATH=" + filepath.Join(root(t), "bin", "packer-plugins"), "CHECKPOINT_DISABLE=1", "PACKER_LOG=0"}
	if out, err := run(t, dir, env, packer, "fmt", "-check", "-diff", "."); err != nil {
		t.Fatalf("packer fmt -check: %v\n%s", err, out)
	}
	// The binaries to bake, as the box build gets them.
	bins := t.TempDir()
	for _, s := range topology.Default().Services {
		if err := os.Symlink(testkit.Binary(t, "services/"+s.Name), filepath.Join(bins, s.Name)); err != nil {
			t.Fatal(err)
		}
	}
	consul, err := consulagent.Binary()
	testkit.Need(t, "consul", err, consulagent.InstallHint)
	if err := os.Symlink(consul, filepath.Join(bins, "consul")); err != nil {
		t.Fatal(err)
	}
	keys := vagrantKeys(t)
	// Checksums "none" keep validation offline (a file: checksum would be fetched).
	args := []string{"validate", "-var", "base_image_checksum=none", "-var", "debian_iso_checksum=none", "-var", "binaries=" + bins,
		"-var", "ssh_private_key_file=" + filepath.Join(keys, "vagrant"), "-var", "ssh_public_key_file=" + filepath.Join(keys, "vagrant.pub")}
	out, err := run(t, dir, env, packer, append(args, ".")...)
	if err != nil || !strings.Contains(out, "The configuration is valid") {
		t.Fatalf("packer validate: %v\n%s", err, out)
	}
	for _, v := range []string{"accelerator=tcg", "cloud_init=false", "kernel=/boot/vmlinuz"} {
		out, err := run(t, dir, env, packer, append(append(args, "-var", v), ".")...)
		if err != nil || !strings.Contains(out, "The configuration is valid") {
			t.Fatalf("packer validate -var %s: %v\n%s", v, err, out)
		}
	}
	// A missing binaries directory is caught.
	out, err = run(t, dir, env, packer, append(append(args, "-var", "binaries="+filepath.Join(bins, "missing")), ".")...)
	if err == nil {
		t.Fatalf("packer validate with a missing binaries directory: got success\n%s", out)
	}
}

// vagrantKeys finds Vagrant's insecure key pair in its installation.
func vagrantKeys(t *testing.T) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub")
	if len(matches) == 0 {
		testkit.Need(t, "Vagrant's insecure key", fmt.Errorf("no vagrant-*/keys/vagrant.pub"), "install it with: sudo apt-get install -y vagrant")
	}
	return filepath.Dir(matches[0])
}

// shellFunc runs a function of lib.sh with env, as provision.sh would.
func shellFunc(t *testing.T, env []string, call string) (string, error) {
	t.Helper()
	return run(t, root(t), env, "bash", "-c", "set -euo pipefail; source provisioning/lib.sh; "+call)
}

// TestConsulConfigs: every configuration provisioning renders passes `consul validate`; a broken one does not.
func TestConsulConfigs(t *testing.T) {
	consul, err := consulagent.Binary()
	testkit.Need(t, "consul", err, consulagent.InstallHint)
	base := []string{"SHOPLAB_NODE=n", "SHOPLAB_IP=192.168.56.110", "CONSUL_GOSSIP_KEY=WbnNRdydHzw0IFv1xWJDZrQf7ZJ4K5RlcuTmEeJZ1zc=",
		"CONSUL_AGENT_TOKEN=3b4a0f1e-6f53-4ad0-8d2c-0a6b1a1e0b01", "CONSUL_DNS_TOKEN=3b4a0f1e-6f53-4ad0-8d2c-0a6b1a1e0b02",
		"CONSUL_MANAGEMENT_TOKEN=3b4a0f1e-6f53-4ad0-8d2c-0a6b1a1e0b03"}
	for _, c := range []struct{ name, role, servers string }{
		{"server of one", "consul-server", "192.168.56.10"},
		{"server of three", "consul-server", "192.168.56.10,192.168.56.11,192.168.56.12"},
		{"client", "service", "192.168.56.10,192.168.56.11,192.168.56.12"},
		{"front client", "front", "192.168.56.10"},
		{"monitor client", "monitor", "192.168.56.10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "consul.hcl")
			env := append([]string{"SHOPLAB_ROLE=" + c.role, "SHOPLAB_SERVERS=" + c.servers, "PATH=" + filepath.Dir(consul) + ":" + os.Getenv("PATH")}, base...)
			if out, err := shellFunc(t, env, "render_consul_config "+file); err != nil {
				t.Fatalf("render: %v\n%s", err, out)
			}
			if out, err := run(t, root(t), nil, consul, "validate", file); err != nil {
				b, _ := os.ReadFile(file)
				t.Fatalf("consul validate: %v\n%s\n%s", err, out, b)
			}
			b, _ := os.ReadFile(file)
			for _, want := range []string{`bind_addr      = "192.168.56.110"`, `advertise_addr = "192.168.56.110"`, `default_policy           = "deny"`,
				`prometheus_retention_time = "1m"`} {
				if !strings.Contains(string(b), want) {
					t.Fatalf("config: want %q in\n%s", want, b)
				}
			}
			if server := strings.Contains(string(b), "initial_management"); server != (c.role == "consul-server") {
				t.Fatalf("initial_management present: got %v; want it only on servers", server)
			}
		})
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	env := append([]string{"SHOPLAB_ROLE=service", "SHOPLAB_SERVERS=192.168.56.10"}, base...)
	env = append(env, "CONSUL_GOSSIP_KEY=not-a-key")
	if out, err := shellFunc(t, env, "render_consul_config "+bad); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	if out, err := run(t, root(t), nil, consul, "validate", bad); err == nil {
		t.Fatalf("consul validate with a broken gossip key: got success\n%s", out)
	}
}

// TestServiceEnv: the environment file of a service names its own address, token and database.
func TestServiceEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	env := []string{"SHOPLAB_SERVICE=catalog", "SHOPLAB_NODE=catalog-2", "SHOPLAB_IP=192.168.56.111", "SHOPLAB_PORT=6082",
		"CONSUL_SERVICE_TOKEN=tok", "DB_HOST=192.168.56.110", "DB_PASSWORD=pw"}
	if out, err := shellFunc(t, env, "render_service_env "+file); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(file)
	for _, want := range []string{"LISTEN_ADDR=192.168.56.111:6082", "ADVERTISE_ADDR=192.168.56.111", "SERVICE_ID=catalog-2",
		"CONSUL_HTTP_TOKEN=tok", "DATABASE_URL=host=192.168.56.110 port=5432 dbname=catalog user=catalog password=pw sslmode=verify-full sslrootcert=/etc/ssl/shoplab/ca.pem target_session_attrs=read-write"} {
		if !strings.Contains(string(b), want+"\n") {
			t.Fatalf("env file: want %q in\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "DATABASE_READ_URL") {
		t.Fatalf("env file of a single PostgreSQL: want no DATABASE_READ_URL in\n%s", b)
	}
	patroni := append(env[:len(env)-2:len(env)-2], "DB_HOST=primary.catalog-db.service.consul", "DB_PASSWORD=pw",
		"DB_PATRONI=yes", "PATRONI_SCOPE=catalog-db")
	if out, err := shellFunc(t, patroni, "render_service_env "+file); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(file)
	for _, want := range []string{
		"DATABASE_URL=host=primary.catalog-db.service.consul port=5432 dbname=catalog user=catalog password=pw sslmode=verify-full sslrootcert=/etc/ssl/shoplab/ca.pem target_session_attrs=read-write",
		"DATABASE_READ_URL=host=192.168.56.111 port=5432 dbname=catalog user=catalog password=pw sslmode=verify-full sslrootcert=/etc/ssl/shoplab/ca.pem target_session_attrs=any",
		"DATABASE_READ_CLUSTER=shoplab/catalog-db", "DATABASE_READ_MEMBER=catalog-2"} {
		if !strings.Contains(string(b), want+"\n") {
			t.Fatalf("env file of a Patroni cluster's service: want %q in\n%s", want, b)
		}
	}
	auth := []string{"SHOPLAB_SERVICE=auth", "SHOPLAB_NODE=auth-1", "SHOPLAB_IP=192.168.56.100", "SHOPLAB_PORT=6081",
		"CONSUL_SERVICE_TOKEN=tok", "DB_HOST=192.168.56.100", "DB_PASSWORD=pw", "AUTH_KEY_ENCRYPTION_KEY=a2V5"}
	if out, err := shellFunc(t, auth, "render_service_env "+file); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(file)
	for _, want := range []string{"AUTH_KEY_ENCRYPTION_KEY=a2V5\n"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("auth env file: want %q in\n%s", want, b)
		}
	}
	if out, err := shellFunc(t, auth[:len(auth)-1], "render_service_env "+file); err == nil {
		t.Fatalf("auth env without AUTH_KEY_ENCRYPTION_KEY: got success; want a refusal\n%s", out)
	}
	for _, svc := range []string{"orders", "payments"} {
		env := []string{"SHOPLAB_SERVICE=" + svc, "SHOPLAB_NODE=" + svc + "-1", "SHOPLAB_IP=192.168.56.130", "SHOPLAB_PORT=6084",
			"CONSUL_SERVICE_TOKEN=tok", "DB_HOST=192.168.56.130", "DB_PASSWORD=pw", "FINGERPRINT_KEY=a2V5"}
		if out, err := shellFunc(t, env, "render_service_env "+file); err != nil {
			t.Fatalf("render: %v\n%s", err, out)
		}
		b, _ = os.ReadFile(file)
		if want := strings.ToUpper(svc) + "_FINGERPRINT_KEY=a2V5\n"; !strings.Contains(string(b), want) {
			t.Fatalf("%s env file: want %q in\n%s", svc, want, b)
		}
		if out, err := shellFunc(t, env[:len(env)-1], "render_service_env "+file); err == nil {
			t.Fatalf("%s env without FINGERPRINT_KEY: got success; want a refusal\n%s", svc, out)
		}
	}
	front := []string{"SHOPLAB_SERVICE=front", "SHOPLAB_NODE=front-1", "SHOPLAB_IP=192.168.56.150", "SHOPLAB_PORT=6080", "CONSUL_SERVICE_TOKEN=tok"}
	if out, err := shellFunc(t, front, "render_service_env "+file); err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	b, _ = os.ReadFile(file)
	if !strings.Contains(string(b), "\nLISTEN_ADDR=0.0.0.0:6080\n") && !strings.HasPrefix(string(b), "LISTEN_ADDR=0.0.0.0:6080\n") ||
		!strings.Contains(string(b), "OPS_LISTEN_ADDR=192.168.56.150:7080\n") || strings.Contains(string(b), "DATABASE_URL") {
		t.Fatalf("front env file: got\n%s\nwant it listening everywhere, its health and metrics on the lab's network (7080), with no database", b)
	}
}

// TestSystemdUnits: the lab's units (and Debian's patroni.service with the lab's drop-in) pass
// `systemd-analyze verify` with ExecStart pointed at a real binary, the service unit keeps its hardening, and
// at shutdown the services stop before their database, Patroni before Consul.
func TestSystemdUnits(t *testing.T) {
	analyze := need(t, "systemd-analyze", "install it with: sudo apt-get install -y systemd")
	consul, err := consulagent.Binary()
	testkit.Need(t, "consul", err, consulagent.InstallHint)
	auth := testkit.Binary(t, "services/auth")
	shoplab := testkit.Binary(t, "cmd/shoplab")
	dir := t.TempDir()
	units := map[string]struct{ src, from, to string }{
		"consul.service":                 {"consul.service", "/usr/local/bin/consul", consul},
		"shoplab@auth.service":           {"shoplab@.service", "/usr/local/lib/shoplab/%i", auth},
		"shoplab-prometheus-sd.service":  {"shoplab-prometheus-sd.service", "/usr/local/lib/shoplab/shoplab", shoplab},
		"shoplab-consul-metrics.service": {"shoplab-consul-metrics.service", "/usr/local/lib/shoplab/shoplab", shoplab},
		"shoplab-patroni-tags.service":   {"shoplab-patroni-tags.service", "/usr/local/lib/shoplab/shoplab", shoplab},
	}
	for name, u := range units {
		b, err := os.ReadFile(filepath.Join(root(t), "provisioning", "systemd", u.src))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart="+u.from) {
			t.Fatalf("%s: want ExecStart=%s", u.src, u.from)
		}
		unit := strings.Replace(string(b), "ExecStart="+u.from, "ExecStart="+u.to, 1)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range units {
		out, err := run(t, dir, []string{"SYSTEMD_LOG_LEVEL=notice"}, analyze, "verify", filepath.Join(dir, name))
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("systemd-analyze verify %s: %v\n%s", name, err, out)
		}
	}
	b, _ := os.ReadFile(filepath.Join(root(t), "provisioning", "systemd", "shoplab@.service"))
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "MemoryMax="} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("shoplab@.service: want %q", want)
		}
	}
	// Debian's units with the lab's drop-ins: patroni.service still a valid unit, ordered after Consul (so it
	// stops before it), with a stop timeout that lets a primary's shutdown finish; prometheus-node-exporter.service
	// after the network (it listens on the VM's private address).
	dropIn := withDropIn(t, analyze, dir, "patroni.service", "patroni-shoplab.conf", "patroni")
	withDropIn(t, analyze, dir, "prometheus-node-exporter.service", "node-exporter-shoplab.conf", "prometheus-node-exporter")
	withDropIn(t, analyze, dir, "prometheus.service", "prometheus-shoplab.conf", "prometheus")
	withDropIn(t, analyze, dir, "postgresql@.service", "postgresql-shoplab.conf", "postgresql")
	// Every unit the box enables is gated on what its role's provisioning writes (one box serves every role), and
	// every long-running one lets the guest batch its timers.
	for file, want := range map[string][]string{
		"consul.service":                 {"ConditionFileNotEmpty=/etc/consul.d/consul.hcl", "TimerSlackNSec=50ms"},
		"shoplab@.service":               {"ConditionPathExists=/etc/shoplab/%i.env", "TimerSlackNSec=50ms"},
		"shoplab-consul-metrics.service": {"ConditionPathExists=/etc/default/shoplab-consul-metrics", "TimerSlackNSec=50ms"},
		"shoplab-prometheus-sd.service":  {"ConditionPathExists=/etc/shoplab/prometheus-sd.token", "TimerSlackNSec=50ms"},
		"shoplab-patroni-tags.service":   {"ConditionPathExists=/etc/patroni/config.yml", "TimerSlackNSec=50ms"},
		"prometheus-shoplab.conf":        {"ConditionPathExists=/etc/prometheus/shoplab/prometheus.yml", "TimerSlackNSec=50ms"},
		"patroni-shoplab.conf":           {"TimerSlackNSec=50ms"},
		"node-exporter-shoplab.conf":     {"TimerSlackNSec=50ms"},
		"postgresql-shoplab.conf":        {"TimerSlackNSec=50ms"},
	} {
		b, err := os.ReadFile(filepath.Join(root(t), "provisioning", "systemd", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w+"\n") {
				t.Errorf("%s: want %q", file, w)
			}
		}
	}
	for _, want := range []string{"After=network-online.target consul.service\n", "Wants=network-online.target consul.service\n", "TimeoutStopSec=120\n"} {
		if !strings.Contains(string(dropIn), want) {
			t.Fatalf("patroni-shoplab.conf: want %q", want)
		}
	}
	if !strings.Contains(string(b), "After=network-online.target consul.service postgresql.service patroni.service\n") {
		t.Fatalf("shoplab@.service: want it ordered after its database and Consul (stopped before them)")
	}
	c, _ := os.ReadFile(filepath.Join(root(t), "provisioning", "systemd", "consul.service"))
	for _, want := range []string{"Type=notify", "User=consul", "-config-dir=/etc/consul.d/"} {
		if !strings.Contains(string(c), want) {
			t.Fatalf("consul.service: want %q", want)
		}
	}
}

// withDropIn verifies Debian's unit (from package pkg) with the lab's drop-in, and returns the drop-in.
func withDropIn(t *testing.T, analyze, dir, unit, dropInFile, pkg string) []byte {
	t.Helper()
	debian, err := os.ReadFile("/lib/systemd/system/" + unit)
	if err != nil {
		t.Fatalf("Debian's %s: %v (install it with: sudo apt-get install -y %s)", unit, err, pkg)
	}
	dropIn, err := os.ReadFile(filepath.Join(root(t), "provisioning", "systemd", dropInFile))
	if err != nil {
		t.Fatal(err)
	}
	// systemd-analyze verify reads no drop-ins beside a unit given by path: verify the two as one file (a
	// section may appear twice, later settings win as a drop-in's do).
	merged := string(debian) + "\n" + string(dropIn)
	if err := os.WriteFile(filepath.Join(dir, unit), []byte(merged), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, dir, []string{"SYSTEMD_LOG_LEVEL=notice"}, analyze, "verify", filepath.Join(dir, unit)); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify %s with the drop-in: %v\n%s", unit, err, out)
	}
	return dropIn
}

// TestIntentionsMatchTheLocalLab: the intentions the VM lab's first server writes (lab.rb, from the topology)
// are the ones the local lab writes (consulx.DesiredIntentions): the same entries, sources and actions.
func TestIntentionsMatchTheLocalLab(t *testing.T) {
	need(t, "ruby", "install it with: sudo apt-get install -y vagrant (it brings Ruby)")
	out, err := run(t, root(t), nil, "ruby", "provisioning/lab.rb")
	if err != nil {
		t.Fatalf("ruby provisioning/lab.rb: %v\n%s", err, out)
	}
	var p struct {
		Intentions []api.ServiceIntentionsConfigEntry `json:"intentions"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load(filepath.Join(root(t), "provisioning", "topology.yml"))
	if err != nil {
		t.Fatal(err)
	}
	flat := func(name string, srcs []*api.SourceIntention) []string {
		var out []string
		for _, s := range srcs {
			out = append(out, fmt.Sprintf("%s → %s %s (%s)", s.Name, name, s.Action, s.Description))
		}
		return out
	}
	var got, want []string
	for _, e := range p.Intentions {
		if e.Kind != api.ServiceIntentions {
			t.Fatalf("entry kind %q; want service-intentions", e.Kind)
		}
		got = append(got, flat(e.Name, e.Sources)...)
	}
	for _, e := range consulx.DesiredIntentions(topo.Calls()) {
		want = append(want, flat(e.Name, e.Sources)...)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("VM lab intentions:\n%s\nwant the local lab's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Contains(want, "* → * deny (shoplab topology: deny by default)") || !slices.Contains(want, "orders → payments allow (shoplab topology: orders calls payments)") {
		t.Fatalf("intentions: want default deny and orders → payments; got\n%s", strings.Join(want, "\n"))
	}
}

// TestNoSecretOnACommandLine: provisioning never puts a token or password into a process's arguments, where
// ps shows it to every user of the VM: tokens travel in files, headers files and the environment, the database
// password on psql's stdin. (make vm-test also reads /proc/*/cmdline on a provisioned VM.)
func TestNoSecretOnACommandLine(t *testing.T) {
	forbidden := []struct{ re, why string }{
		{`-secret[ =]`, "consul acl token create -secret"},
		{`-token[ =]`, "a token flag"},
		{`CONSUL_HTTP_TOKEN="?\$`, "CONSUL_HTTP_TOKEN=… on a command line (env VAR=…)"},
		{`-v pw=`, "a psql variable with the password"},
		{`X-Consul-Token: \$\{?\w+\}?"? http`, "a token header as a curl argument"},
		{`--password[ =]`, "a password flag"},
	}
	files, _ := filepath.Glob(filepath.Join(root(t), "provisioning", "*.sh"))
	files = append(files, filepath.Join(root(t), "provisioning", "shoplab-admin"), filepath.Join(root(t), "Vagrantfile"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			trimmed := strings.TrimSpace(line)
			if strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "printf") || strings.HasPrefix(trimmed, "export ") {
				continue // comments, and printf and export (shell builtins: no process, no argv)
			}
			for _, fb := range forbidden {
				if regexp.MustCompile(fb.re).MatchString(line) {
					t.Errorf("%s:%d: %s — a secret in a process's arguments: %s", filepath.Base(f), i+1, fb.why, trimmed)
				}
			}
		}
	}
}

// TestUnitFilesAllInstalled: install_units installs every unit and drop-in of provisioning/systemd, each once.
func TestUnitFilesAllInstalled(t *testing.T) {
	out, err := shellFunc(t, nil, `printf '%s\n' "$SHOPLAB_UNIT_FILES"`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	listed := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		src, dst, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(dst, "/etc/systemd/") {
			t.Fatalf("SHOPLAB_UNIT_FILES: %q; want \"FILE /etc/systemd/…\"", line)
		}
		listed[src]++
	}
	files, _ := filepath.Glob(filepath.Join(root(t), "provisioning", "systemd", "*"))
	for _, f := range files {
		if n := listed[filepath.Base(f)]; n != 1 {
			t.Errorf("provisioning/systemd/%s: listed %d times in SHOPLAB_UNIT_FILES; want 1", filepath.Base(f), n)
		}
		delete(listed, filepath.Base(f))
	}
	for src := range listed {
		t.Errorf("SHOPLAB_UNIT_FILES names %s, which provisioning/systemd does not have", src)
	}
}

// TestPut: put installs a file only when its content or mode differs, and says whether it did (provisioning
// restarts what reads a file only then).
func TestPut(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "sub", "dst")
	owner := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	if u, err := user.Current(); err == nil {
		if g, err := user.LookupGroupId(u.Gid); err == nil {
			owner = u.Username + ":" + g.Name
		}
	}
	for _, c := range []struct {
		name, content, mode string
		changed             bool
	}{
		{"a new file", "a\n", "0644", true},
		{"the same again", "a\n", "0644", false},
		{"another content", "b\n", "0644", true},
		{"another mode", "b\n", "0600", true},
		{"the same again", "b\n", "0600", false},
	} {
		if err := os.WriteFile(src, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := shellFunc(t, nil, fmt.Sprintf("if put %s %s %s %s; then echo changed; else echo same; fi", src, dst, c.mode, owner))
		got := strings.TrimSpace(out)
		if err != nil || got != map[bool]string{true: "changed", false: "same"}[c.changed] {
			t.Fatalf("%s: got %q, %v; want changed=%v", c.name, got, err, c.changed)
		}
		if b, _ := os.ReadFile(dst); string(b) != c.content {
			t.Fatalf("%s: the file holds %q; want %q", c.name, b, c.content)
		}
	}
}
