package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/consulx"
	"shoplab/internal/mesh"
	"shoplab/lab"
	"shoplab/lab/consulagent"
	"shoplab/lab/proc"
)

// gatewayBench is the gateway part of shoplab bench: a small JSON backend registered in a real Consul agent
// (plain, and Connect-native behind mutual TLS), nginx (1 worker, upstream keep-alive) and the front
// (GOMAXPROCS=1) in front of it, wrk rounds with the contenders interleaved, then fixed-rate latency.
type gatewayBench struct {
	bin, wrk, nginx string
	rounds          int
	duration        time.Duration
	conns           int
	compareEnv      []string // a second front with these variables, as one more contender
	out, log        io.Writer

	work             string
	direct           string // the backend's URL
	nginxURL, front  string // base URLs
	frontPID         int
	compare          string // the second front's base URL
	bare             string // the reference proxy's base URL
	stop             []func()
	frontPeakRSS     float64
	frontRSSAtRate   float64
	frontRateForRSS  float64
	frontRateReached float64
}

// benchBody is the backend's answer: a small catalog page, like the shop's.
var benchBody = []byte(`{"products":[{"id":"prd_1","name":"Burr Coffee Grinder","price_cents":8900,"currency":"USD"}],"next_cursor":null}` + "\n")

type contender struct {
	name, url string
	versus    string // the contender its ratio is taken against
	front     bool
}

func (g *gatewayBench) say(format string, args ...any) {
	fmt.Fprintf(g.log, "bench: "+format+"\n", args...)
}

// run sets everything up, measures, prints the tables and tears everything down (by PID) whatever happens.
func (g *gatewayBench) run(ctx context.Context) (err error) {
	defer func() {
		for i := len(g.stop) - 1; i >= 0; i-- {
			g.stop[i]()
		}
	}()
	if err := g.setUp(ctx); err != nil {
		return err
	}
	contenders := []contender{
		{name: "direct", url: g.direct + "/v1/products"},
		{name: "nginx", url: g.nginxURL + "/api/bench/v1/products"},
		{name: "bare fasthttp proxy", url: g.bare + "/api/bench/v1/products", versus: "nginx"},
		{name: "front", url: g.front + "/api/bench/v1/products", versus: "nginx", front: true},
		{name: "nginx, mTLS upstream", url: g.nginxURL + "/api/benchtls/v1/products"},
		{name: "front, mTLS upstream", url: g.front + "/api/benchtls/v1/products", versus: "nginx, mTLS upstream", front: true},
	}
	if g.compare != "" {
		contenders = append(contenders[:4], append([]contender{{name: "front, " + strings.Join(g.compareEnv, " "), url: g.compare + "/api/bench/v1/products", versus: "nginx"}}, contenders[4:]...)...)
	}
	// Warm up: connections, the front's discovery watches, TLS sessions.
	for _, c := range contenders {
		if _, err := runWrk(ctx, g.wrk, c.url, g.conns, time.Second); err != nil {
			return err
		}
	}
	results := map[string][]wrkResult{}
	for r := 1; r <= g.rounds; r++ {
		for _, c := range contenders {
			stopSampling := g.sampleFront(c.front)
			res, err := runWrk(ctx, g.wrk, c.url, g.conns, g.duration)
			stopSampling()
			if err != nil {
				return err
			}
			results[c.name] = append(results[c.name], res)
			g.say("round %d/%d  %-22s %8.0f req/s  p99 %s  errors %d", r, g.rounds, c.name, res.RPS, res.P99, res.Errors)
		}
	}
	fmt.Fprintf(g.out, "\nThroughput: wrk -t1 -c%d -d%s, %d rounds interleaved; nginx 1 worker, the front GOMAXPROCS=1\n\n", g.conns, g.duration, g.rounds)
	tw := tabwriter.NewWriter(g.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\trequests/s (each round)\tmedian\tratio\tround by round\tp50\tp99\terrors\t")
	for _, c := range contenders {
		rs := results[c.name]
		ratio, byRound := "-", "-"
		if c.versus != "" {
			ratio = fmt.Sprintf("%.2f× %s", median(rs, rps)/median(results[c.versus], rps), strings.TrimSuffix(c.versus, ", mTLS upstream"))
			byRound = roundRatios(rs, results[c.versus])
		}
		rounds := make([]string, len(rs))
		errs := 0
		for i, r := range rs {
			rounds[i] = fmt.Sprintf("%.0f", r.RPS)
			errs += r.Errors
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t\n", c.name, strings.Join(rounds, " "), median(rs, rps), ratio, byRound,
			time.Duration(median(rs, p50)).Round(10*time.Microsecond), time.Duration(median(rs, p99)).Round(10*time.Microsecond), errs)
	}
	tw.Flush()
	g.frontRateReached = median(results["front"], rps)

	// Latency at a fixed rate: half the front's own maximum, both proxies, interleaved.
	rate := g.frontRateReached / 2
	fmt.Fprintf(g.out, "\nLatency at a fixed rate of %.0f requests/s (half the front's maximum), open loop, %d connections, %s each\n\n", rate, g.conns, g.duration)
	fixed := map[string][]rateResult{}
	pair := []contender{contenders[1], contenders[3]} // nginx and the front, plain upstreams
	for r := 1; r <= 2; r++ {
		for _, c := range pair {
			res, err := fixedRate(ctx, c.url, rate, g.duration, g.conns)
			if err != nil {
				return err
			}
			fixed[c.name] = append(fixed[c.name], res)
			g.say("fixed rate %d/2  %-6s p50 %s  p99 %s  p99.9 %s  failed %d  late %d", r, c.name, res.P50, res.P99, res.P999, res.Failed, res.Late)
		}
	}
	tw = tabwriter.NewWriter(g.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "contender\tanswered/s\tp50\tp99 (each run)\tp99.9\tfailed\tlate\tp99 ratio\t")
	for _, c := range pair {
		rs := fixed[c.name]
		var p99s []string
		var answered float64
		failed, late := 0, 0
		for _, r := range rs {
			p99s = append(p99s, r.P99.Round(10*time.Microsecond).String())
			answered += r.Achieved() / float64(len(rs))
			failed += r.Failed
			late += r.Late
		}
		ratio := "-"
		if c.front {
			ratio = fmt.Sprintf("%.2f× nginx", medianRate(rs, func(r rateResult) time.Duration { return r.P99 })/medianRate(fixed["nginx"], func(r rateResult) time.Duration { return r.P99 }))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t\n", c.name, answered,
			time.Duration(medianRate(rs, func(r rateResult) time.Duration { return r.P50 })).Round(10*time.Microsecond),
			strings.Join(p99s, " "),
			time.Duration(medianRate(rs, func(r rateResult) time.Duration { return r.P999 })).Round(10*time.Microsecond),
			failed, late, ratio)
	}
	tw.Flush()

	// The front's memory at 20 000 requests/s (or its maximum, if lower).
	g.frontRateForRSS = min(20000, g.frontRateReached*0.9)
	stopSampling := g.sampleFront(true)
	res, err := fixedRate(ctx, g.front+"/api/bench/v1/products", g.frontRateForRSS, g.duration, g.conns)
	g.frontRSSAtRate = stopSampling()
	if err != nil {
		return err
	}
	fmt.Fprintf(g.out, "\nThe front's memory: %.1f MiB resident at most while answering %.0f requests/s (%d failed); %.1f MiB at most over the whole run (VmHWM).\n",
		g.frontRSSAtRate, res.Achieved(), res.Failed+res.Late, g.frontPeakRSS)
	return nil
}

// roundRatios is the median and range of rs's requests/s over versus's, round by round: each pair ran back to
// back, so on a noisy machine it says more than the ratio of the two medians.
func roundRatios(rs, versus []wrkResult) string {
	var v []float64
	for i := range min(len(rs), len(versus)) {
		if versus[i].RPS > 0 {
			v = append(v, rs[i].RPS/versus[i].RPS)
		}
	}
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	mid := v[len(v)/2]
	if len(v)%2 == 0 {
		mid = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", mid, v[0], v[len(v)-1])
}

func rps(r wrkResult) float64 { return r.RPS }
func p50(r wrkResult) float64 { return float64(r.P50) }
func p99(r wrkResult) float64 { return float64(r.P99) }

func median(rs []wrkResult, f func(wrkResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func medianRate(rs []rateResult, f func(rateResult) time.Duration) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = float64(f(r))
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// sampleFront samples the front's resident memory every 100 ms while on, until the returned function is
// called; that returns the largest sample (MiB) and records the process's peak.
func (g *gatewayBench) sampleFront(on bool) func() float64 {
	if !on {
		return func() float64 { return 0 }
	}
	done, result := make(chan struct{}), make(chan float64, 1)
	path := fmt.Sprintf("/proc/%d/status", g.frontPID)
	go func() {
		largest := 0.0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(path); err == nil {
				rss, peak := rssMiB(b)
				largest = max(largest, rss)
				g.frontPeakRSS = max(g.frontPeakRSS, peak)
			}
			select {
			case <-done:
				result <- largest
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 { close(done); return <-result }
}

// setUp starts Consul, the backends, nginx and the front, and waits until each answers through every path.
func (g *gatewayBench) setUp(ctx context.Context) error {
	var err error
	if g.work, err = os.MkdirTemp("", "shoplab-bench-"); err != nil {
		return err
	}
	g.stop = append(g.stop, func() { os.RemoveAll(g.work) })
	g.say("work directory %s", g.work)

	agent, err := consulagent.StartDev(ctx, consulagent.Options{LogPath: filepath.Join(g.work, "consul.log")})
	if err != nil {
		return err
	}
	g.stop = append(g.stop, func() { _ = agent.Stop() })
	cc := consulx.ClientConfig{Address: agent.HTTPAddr}
	consul, err := consulx.NewClient(cc)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithCancel(ctx)
	g.stop = append(g.stop, cancel)
	quiet := hclog.NewNullLogger()

	// The backend: plain HTTP, and the same answer behind the mesh's mutual TLS as a Connect-native service.
	handler := func(c *fasthttp.RequestCtx) {
		c.SetContentType("application/json")
		c.SetBody(benchBody)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	plainSrv := &fasthttp.Server{Handler: handler, Name: "bench"}
	go func() { _ = plainSrv.Serve(plain) }()
	g.stop = append(g.stop, func() { _ = plainSrv.Shutdown() })
	plainPort := plain.Addr().(*net.TCPAddr).Port
	g.direct = fmt.Sprintf("http://127.0.0.1:%d", plainPort)

	id := mesh.Start(bctx, consul, "benchtls", quiet)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := id.Wait(wctx); err != nil {
		return fmt.Errorf("the backend's mesh certificate: %w", err)
	}
	authz, err := mesh.NewAuthorizer(cc, "benchtls", 500*time.Millisecond, quiet)
	if err != nil {
		return err
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tlsSrv := &fasthttp.Server{Handler: handler, Name: "bench"}
	go func() { _ = tlsSrv.Serve(tls.NewListener(tlsLn, id.ServerTLS(authz))) }()
	g.stop = append(g.stop, func() { _ = tlsSrv.Shutdown() })
	tlsPort := tlsLn.Addr().(*net.TCPAddr).Port

	for _, reg := range []consulx.Registration{
		{Name: "bench", ID: "bench-1", Address: "127.0.0.1", Port: plainPort, Public: true, InitialPassing: true, CheckPath: "/"},
		{Name: "benchtls", ID: "benchtls-1", Address: "127.0.0.1", Port: tlsPort, Public: true, Native: true, CheckPort: plainPort, InitialPassing: true, CheckPath: "/"},
	} {
		r, err := consulx.Register(ctx, consul, reg, quiet)
		if err != nil {
			return err
		}
		g.stop = append(g.stop, func() { _ = r.Deregister(context.Background()) })
	}

	if err := g.startNginx(consul, plainPort, tlsPort); err != nil {
		return err
	}
	if err := g.startBare(plainPort); err != nil {
		return err
	}
	var p *proc.Process
	if g.front, p, err = g.startFront(agent.HTTPAddr, "front-bench", nil); err != nil {
		return err
	}
	g.frontPID = p.PID()
	if len(g.compareEnv) > 0 {
		g.compare, _, err = g.startFront(agent.HTTPAddr, "front-bench-compare", g.compareEnv)
	}
	return err
}

// startNginx runs nginx with one worker in front of both backends; for the mutual-TLS upstream it presents a
// mesh certificate of its own. (It cannot check the backend's SPIFFE identity — Consul's certificates carry no
// DNS name — so, unlike the front, it verifies nothing of the server.)
func (g *gatewayBench) startNginx(consul *api.Client, plainPort, tlsPort int) error {
	leaf, _, err := consul.Agent().ConnectCALeaf("nginx", nil)
	if err != nil {
		return fmt.Errorf("nginx's mesh certificate: %w", err)
	}
	crt, key := filepath.Join(g.work, "nginx.crt"), filepath.Join(g.work, "nginx.key")
	if err := os.WriteFile(crt, []byte(leaf.CertPEM), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(key, []byte(leaf.PrivateKeyPEM), 0o600); err != nil {
		return err
	}
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	tmp := filepath.Join(g.work, "nginx-tmp")
	if err := os.MkdirAll(tmp, 0o777); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# shoplab bench: nginx with one worker, upstream keep-alive, an access log like the front's.
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
	access_log %[1]s/nginx-access.log;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream plain { server 127.0.0.1:%[3]d; keepalive 64; }
	upstream mtls { server 127.0.0.1:%[4]d; keepalive 64; }
	server {
		listen 127.0.0.1:%[5]d;
		location /api/bench/ {
			proxy_pass http://plain/;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
		location /api/benchtls/ {
			proxy_pass https://mtls/;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_ssl_certificate %[6]s;
			proxy_ssl_certificate_key %[7]s;
			proxy_ssl_protocols TLSv1.3;
			proxy_ssl_session_reuse on;
		}
	}
}
`, g.work, tmp, plainPort, tlsPort, port, crt, key)
	path := filepath.Join(g.work, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := proc.Start(proc.Spec{Name: "nginx", Path: g.nginx, Args: []string{"-p", g.work, "-c", path}, LogPath: filepath.Join(g.work, "nginx.out")})
	if err != nil {
		return err
	}
	g.stop = append(g.stop, func() { _ = p.Stop(syscall.SIGQUIT, 10*time.Second) })
	g.nginxURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitAnswers(p, g.nginxURL+"/api/bench/v1/products", g.nginxURL+"/api/benchtls/v1/products")
}

// startBare runs shoplab bench-proxy, the reference: a bare fasthttp proxy to the plain backend, one core.
func (g *gatewayBench) startBare(plainPort int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	p, err := proc.Start(proc.Spec{Name: "bench-proxy", Path: self, Env: append(os.Environ(), "GOMAXPROCS=1"),
		Args:    []string{"bench-proxy", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--upstream", fmt.Sprintf("127.0.0.1:%d", plainPort), "--strip", "/api/bench"},
		LogPath: filepath.Join(g.work, "bench-proxy.log")})
	if err != nil {
		return err
	}
	g.stop = append(g.stop, func() { _ = p.Stop(syscall.SIGTERM, 10*time.Second) })
	g.bare = fmt.Sprintf("http://127.0.0.1:%d", port)
	return waitAnswers(p, g.bare+"/api/bench/v1/products")
}

// startFront runs the front binary with GOMAXPROCS=1 against the bench's Consul agent, and more environment.
func (g *gatewayBench) startFront(consulAddr, id string, more []string) (string, *proc.Process, error) {
	port, err := proc.FreePort()
	if err != nil {
		return "", nil, err
	}
	// wrk's connections all come from one address: the front's share per address must hold them.
	env := append(lab.ServiceEnv(os.Environ(), "front"), "GOMAXPROCS=1", "CONSUL_HTTP_ADDR="+consulAddr, fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port),
		"SERVICE_ID="+id, fmt.Sprintf("FRONT_MAX_CONNS_PER_ADDR=%d", max(256, g.conns)), fmt.Sprintf("FRONT_MAX_CONNS=%d", max(1024, 2*g.conns)))
	p, err := proc.Start(proc.Spec{Name: id, Path: filepath.Join(g.bin, "front"), Env: append(env, more...), LogPath: filepath.Join(g.work, id+".log")})
	if err != nil {
		return "", nil, fmt.Errorf("%w (build it with: make build)", err)
	}
	g.stop = append(g.stop, func() { _ = p.Stop(syscall.SIGTERM, 10*time.Second) })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return url, p, waitAnswers(p, url+"/api/bench/v1/products", url+"/api/benchtls/v1/products")
}

// waitAnswers waits (at most 30 s) until every url answers 200 with the backend's body.
func waitAnswers(p *proc.Process, urls ...string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return proc.WaitFor(p, 30*time.Second, 50*time.Millisecond, func() error {
		for _, u := range urls {
			resp, err := client.Get(u)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != string(benchBody) {
				return fmt.Errorf("%s: %s %q", u, resp.Status, b)
			}
		}
		return nil
	})
}

var errNoTool = errors.New("missing tool")

// lookTool finds a tool on PATH (and in /usr/sbin, where Debian puts nginx).
func lookTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if p := filepath.Join("/usr/sbin", name); isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is not installed (apt-get install -y %s)", errNoTool, name, pkg)
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
