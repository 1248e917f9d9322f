package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoplab/internal/topology"
	"shoplab/lab"
	"shoplab/lab/proc"
	"shoplab/lab/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type labState struct {
	Front        string  `json:"front"`
	ConsulAddr   string  `json:"consul_addr"`
	ConsulPID    int     `json:"consul_pid"`
	PostgresPID  int     `json:"postgres_pid"`
	ReadySeconds float64 `json:"ready_seconds"`
	Prometheus   string  `json:"prometheus"`
	PromPID      int     `json:"prometheus_pid"`
	Instances    []struct {
		ID  string `json:"id"`
		PID int    `json:"pid"`
	} `json:"instances"`
}

func readLabState(path string) (labState, error) {
	var s labState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func (s labState) pid(id string) int {
	for _, in := range s.Instances {
		if in.ID == id {
			return in.PID
		}
	}
	return 0
}

// freeOffset finds a port offset at which every port the lab needs is free.
func freeOffset(t *testing.T) int {
	t.Helper()
	for off := 20000; off < 40000; off += 137 {
		ok := true
		ports := []int{lab.ConsulPort, lab.PostgresPort}
		for _, in := range topology.Default().Instances() {
			ports = append(ports, in.LocalPort(), in.LocalPort()+lab.OpsPortStep)
		}
		for _, p := range ports {
			if !proc.PortFree(fmt.Sprintf("127.0.0.1:%d", p+off)) {
				ok = false
				break
			}
		}
		if ok {
			return off
		}
	}
	t.Fatal("no free port offset")
	return 0
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func smokeOK(t *testing.T, shoplab, state, front string) {
	t.Helper()
	out, err := exec.Command(shoplab, "smoke", "--front", front).CombinedOutput()
	if err != nil {
		for _, id := range []string{"front-1", "catalog-1", "auth-1"} {
			t.Logf("%s log (tail):\n%s", id, proc.TailFile(filepath.Join(state, "logs", id+".log"), 15))
		}
		t.Fatalf("shoplab smoke: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "smoke passed") {
		t.Fatalf("shoplab smoke: got\n%s", out)
	}
}

// prometheusScrapesAll: with prometheus installed, the lab runs it, and it scrapes every instance (found
// through Consul) and the Consul agent.
func prometheusScrapesAll(t *testing.T, s labState) {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		testkit.Need(t, "prometheus", err, "sudo apt-get install --no-install-recommends prometheus")
		return
	}
	if s.Prometheus == "" {
		t.Fatal("lab.json names no Prometheus; want the lab to run it when prometheus is installed")
	}
	want := map[string]bool{"consul": true}
	for _, in := range s.Instances {
		want[in.ID] = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var body struct {
			Data struct {
				ActiveTargets []struct {
					Labels map[string]string `json:"labels"`
					Health string            `json:"health"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		up := map[string]bool{}
		if resp, err := http.Get(s.Prometheus + "/api/v1/targets?state=active"); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		for _, a := range body.Data.ActiveTargets {
			name := a.Labels["instance"]
			if a.Labels["job"] == "consul" {
				name = "consul"
			}
			up[name] = a.Health == "up"
		}
		missing := []string{}
		for id := range want {
			if !up[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			t.Logf("Prometheus scrapes all %d targets", len(want))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus: %v not up within 30s (targets: %v)", missing, up)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestLabEndToEnd runs the lab as a user would: the built binaries as real processes. It smokes the shop,
// kills a service (the lab restarts it) and smokes again, then stops the lab as Ctrl-C does and checks that
// no process is left.
func TestLabEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("consul"); err != nil {
		if _, err := os.Stat(filepath.Join(mustRoot(t), "bin", "consul")); err != nil {
			testkit.Need(t, "consul", err, "build it with: make consul")
		}
	}
	shoplab := testkit.Binary(t, "cmd/shoplab")
	for _, s := range topology.Default().Services {
		testkit.Binary(t, "services/"+s.Name)
	}
	bin := filepath.Dir(shoplab)
	state, err := os.MkdirTemp("", "shoplab-lab-") // not t.TempDir: the postgres user must reach it when we are root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	offset := freeOffset(t)

	logPath := filepath.Join(state, "lab.out")
	start := time.Now()
	lab, err := proc.Start(proc.Spec{Name: "shoplab lab", Path: shoplab, LogPath: logPath,
		Args: []string{"lab", "--state", state, "--bin", bin, "--port-offset", fmt.Sprint(offset),
			"--topology", filepath.Join(mustRoot(t), "provisioning", "topology.yml")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Stop(syscall.SIGINT, 60*time.Second) })
	statePath := filepath.Join(state, "lab.json")
	err = proc.WaitFor(lab, 90*time.Second, 50*time.Millisecond, func() error { _, err := readLabState(statePath); return err })
	if err != nil {
		t.Fatalf("lab did not become ready: %v\n%s", err, proc.TailFile(logPath, 40))
	}
	s, _ := readLabState(statePath)
	t.Logf("lab ready after %.1fs (its own measure: %.2fs from start to every instance passing)", time.Since(start).Seconds(), s.ReadySeconds)
	for _, in := range s.Instances {
		if rss := rssKiB(in.PID); rss > 0 {
			t.Logf("%-11s pid %-7d rss %6.1f MiB", in.ID, in.PID, float64(rss)/1024)
		}
	}
	if !strings.Contains(proc.TailFile(logPath, 20), "shoplab is ready") {
		t.Fatalf("lab output: got\n%s\nwant the ready banner with the URLs", proc.TailFile(logPath, 20))
	}
	smokeOK(t, shoplab, state, s.Front)
	prometheusScrapesAll(t, s)
	operatorCommands(t, shoplab, state, bin, s.Front)

	// A service dies; the lab brings it back and the shop keeps working.
	oldPID := s.pid("catalog-1")
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ = readLabState(statePath)
		if p := s.pid("catalog-1"); p != 0 && p != oldPID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog-1 was not restarted within 30s:\n%s", proc.TailFile(logPath, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	topo := filepath.Join(mustRoot(t), "provisioning", "topology.yml")
	statusCmd := func(extra ...string) *exec.Cmd {
		c := exec.Command(shoplab, append([]string{"status", "--consul", s.ConsulAddr, "--topology", topo}, extra...)...)
		c.Env = append(os.Environ(), "REPLICAS=")
		return c
	}
	status, err := statusCmd().CombinedOutput()
	for i := 0; err != nil && i < 50; i++ { // the new instance's first check may take a moment
		time.Sleep(100 * time.Millisecond)
		status, err = statusCmd().CombinedOutput()
	}
	if err != nil {
		t.Fatalf("shoplab status after the restart: %v\n%s", err, status)
	}
	// Presence, not only health: a replica the topology expects but Consul lacks fails the status.
	if out, err := statusCmd("--replicas", "catalog=2").CombinedOutput(); err == nil || !strings.Contains(string(out), "catalog: 1 of 2 expected instances passing") {
		t.Fatalf("shoplab status expecting two catalogs: got %v\n%s\nwant a failure naming the missing catalog", err, out)
	}
	smokeOK(t, shoplab, state, s.Front)

	// Ctrl-C: everything stops, nothing is left.
	pids := []int{oldPID, s.ConsulPID, s.PostgresPID}
	if s.PromPID != 0 {
		pids = append(pids, s.PromPID)
	}
	for _, in := range s.Instances {
		pids = append(pids, in.PID)
	}
	if err := lab.Stop(syscall.SIGINT, 60*time.Second); err != nil {
		t.Fatalf("stopping the lab: %v\n%s", err, proc.TailFile(logPath, 20))
	}
	if _, exitErr := lab.Exited(); exitErr != nil {
		t.Fatalf("lab exit after Ctrl-C: got %v; want 0\n%s", exitErr, proc.TailFile(logPath, 20))
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d is still running after the lab stopped", pid)
		}
	}
	if !strings.Contains(proc.TailFile(logPath, 5), "shoplab: stopped.") {
		t.Fatalf("lab output at the end: got\n%s", proc.TailFile(logPath, 5))
	}
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// rssKiB is a process's resident memory from /proc, or 0.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return 0
}

// operatorCommands: shoplab admin makes an account an admin in the running lab, lists it and mints its token;
// the token works on the admin API through the front; shoplab load restocks a product running low with it;
// revoking refuses the token at once.
func operatorCommands(t *testing.T, shoplab, state, bin, front string) {
	t.Helper()
	admin := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(shoplab, append([]string{"admin"}, append(args, "--state", state, "--bin", bin)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("shoplab admin %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	email := fmt.Sprintf("ops-%d@example.com", time.Now().UnixNano())
	r := testkit.Call(t, "POST", front+"/api/auth/v1/users", fmt.Sprintf(`{"email":%q,"password":"operator password","name":"Ops"}`, email))
	if r.Status != 201 {
		t.Fatalf("register: got %d %s", r.Status, r.Body)
	}
	if out := admin("grant", "--email", email); !strings.Contains(out, "is an admin") {
		t.Fatalf("grant: got %q", out)
	}
	if out := admin("list"); !strings.Contains(out, email) {
		t.Fatalf("list: got %q; want %s", out, email)
	}
	token := strings.TrimSpace(admin("token", "--email", email))
	bearer := []string{"Authorization", "Bearer " + token}
	if r := testkit.Call(t, "GET", front+"/api/auth/v1/users/me", "", bearer...); r.Status != 200 || !strings.Contains(r.String(), `"roles":["admin"]`) {
		t.Fatalf("me with the minted token: got %d %s; want 200 with roles [admin]", r.Status, r.Body)
	}
	// A product runs low; a short load with the token restocks it.
	const kettle = "prd_01hx4kq2m3kettle000004"
	var p struct {
		Stock int `json:"stock"`
	}
	testkit.Call(t, "GET", front+"/api/catalog/v1/products/"+kettle, "").Decode(t, &p)
	r = testkit.Call(t, "POST", front+"/api/catalog/v1/products/"+kettle+"/stock-adjustments",
		fmt.Sprintf(`{"delta":%d,"reason":"test: run low"}`, 10-p.Stock), append(bearer, "Idempotency-Key", fmt.Sprint("low-", time.Now().UnixNano()))...)
	if r.Status != 200 {
		t.Fatalf("set the kettle's stock to 10: got %d %s", r.Status, r.Body)
	}
	// The token never on a command line (ps shows those to every user): refused there, read from a file.
	out, err := exec.Command(shoplab, "load", "--front", front, "--duration", "3s", "--admin-token", token).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SHOPLAB_ADMIN_TOKEN") {
		t.Fatalf("shoplab load --admin-token: got %v\n%s; want it refused, naming SHOPLAB_ADMIN_TOKEN", err, out)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(shoplab, "load", "--front", front, "--duration", "3s", "--rate", "5", "--users", "2",
		"--admin-token-file", tokenFile, "--restock-below", "50", "--restock-to", "300").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "restocked") {
		t.Fatalf("shoplab load with --admin-token-file: %v\n%s", err, out)
	}
	testkit.Call(t, "GET", front+"/api/catalog/v1/products/"+kettle, "").Decode(t, &p)
	if p.Stock < 290 {
		t.Fatalf("kettle stock after the load: got %d; want it restocked to about 300\n%s", p.Stock, out)
	}
	// Checkouts whose orders are looked up again afterwards (the VM lab's failover checks use this).
	load := exec.Command(shoplab, "load", "--front", front, "--scenario", "checkout", "--shoppers", "2", "--duration", "3s", "--verify-orders")
	load.Env = append(os.Environ(), "SHOPLAB_ADMIN_TOKEN="+token)
	out, err = load.CombinedOutput()
	m := regexp.MustCompile(`orders: (\d+) confirmed during the run; afterwards (\d+) found confirmed, 0 lost`).FindStringSubmatch(string(out))
	if err != nil || m == nil || m[1] != m[2] || m[1] == "0" {
		t.Fatalf("shoplab load --verify-orders: %v\n%s\nwant every confirmed order found again", err, out)
	}
	if out := admin("revoke", "--email", email); !strings.Contains(out, "no longer an admin") {
		t.Fatalf("revoke: got %q", out)
	}
	testkit.WantError(t, testkit.Call(t, "GET", front+"/api/auth/v1/users/me", "", bearer...), 401, "token_revoked")
}
