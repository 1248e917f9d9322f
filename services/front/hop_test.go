package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/valyala/fasthttp"

	"shoplab/internal/consulx"
	"shoplab/lab/testkit"
)

// TestDelHop: what the gateway forwards keeps the end-to-end headers and loses every hop-by-hop one (and, on
// the way up, the cookies), however the client spelled their names.
func TestDelHop(t *testing.T) {
	hops := "Connection: close\r\nproxy-connection: x\r\nKEEP-ALIVE: timeout=5\r\nProxy-Authenticate: Basic\r\nProxy-Authorization: Basic eA==\r\n" +
		"TE: trailers\r\nUpgrade: websocket\r\n"
	t.Run("request", func(t *testing.T) {
		var req fasthttp.Request
		raw := "GET /v1/cart HTTP/1.1\r\nHost: front\r\nAuthorization: Bearer t\r\nCookie: shoplab_session=s; csrf=c\r\nX-Request-ID: r\r\n" + hops + "\r\n"
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		var up fasthttp.Request
		req.Header.CopyTo(&up.Header)
		delHop(&up.Header, true)
		up.Header.DelAllCookies()
		got := up.Header.String()
		for _, gone := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "\r\nTe:", "Upgrade", "Cookie", "shoplab_session"} {
			if strings.Contains(strings.ToLower(got), strings.ToLower(gone)) {
				t.Errorf("upstream request: got %q; want no %s", got, gone)
			}
		}
		for _, kept := range []string{"Authorization: Bearer t", "X-Request-Id: r", "Host: front"} {
			if !strings.Contains(got, kept) {
				t.Errorf("upstream request: got %q; want %s kept", got, kept)
			}
		}
	})
	t.Run("response", func(t *testing.T) {
		var resp fasthttp.Response
		raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Upstream: a\r\nTrailer: X-Checksum\r\n" + hops + "\r\n{}"
		if err := resp.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		delHop(&resp.Header, false)
		got := resp.Header.String()
		for _, gone := range []string{"Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "\r\nTe:", "Upgrade", "Trailer"} {
			if strings.Contains(strings.ToLower(got), strings.ToLower(gone)) {
				t.Errorf("answer: got %q; want no %s", got, gone)
			}
		}
		if !strings.Contains(got, "X-Upstream: a") || resp.Header.ConnectionClose() {
			t.Errorf("answer: got %q (connection close %v); want X-Upstream kept and the client's connection not closed by the upstream's header", got, resp.Header.ConnectionClose())
		}
	})
}

// TestForwardedRequest: what an instance receives through the gateway, sent over one raw keep-alive
// connection: the client's method, path (below the service's name) and query, its body, the request id, who
// the client is (not who it claims to be), no cookies and no hop-by-hop headers; a second request on the same
// connection is forwarded as it was sent, and a client asking to close gets Connection: close and the end of
// the connection. It runs with the front's yield before reads (yieldconn.go) on, its default, and off.
func TestForwardedRequest(t *testing.T) {
	for _, yield := range []string{"true", "false"} {
		t.Run("FRONT_YIELD_BEFORE_READ="+yield, func(t *testing.T) { testForwardedRequest(t, yield) })
	}
}

func testForwardedRequest(t *testing.T, yield string) {
	type seen struct {
		method, uri, body, xff, xfh, proto, id, cookie, conn string
	}
	got := make(chan seen, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" { // Consul's check
			return
		}
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, string(body), strings.Join(r.Header.Values("X-Forwarded-For"), " | "), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Request-ID"), r.Header.Get("Cookie"), r.Header.Get("Connection")}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})}
	go func() { _ = backend.Serve(ln) }()
	t.Cleanup(func() { _ = backend.Close() })
	st := &testkit.Stack{Consul: testkit.NewConsul(t)}
	reg, err := consulx.Register(context.Background(), st.Consul.Client, consulx.Registration{
		Name: "echo", ID: "echo-1", Address: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Public: true, InitialPassing: true, CheckPath: "/",
	}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	front := startFront(t, st, map[string]string{"LOG_FLUSH_INTERVAL": "0", // every access line written at once
		"FRONT_YIELD_BEFORE_READ": yield})

	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	send := func(raw string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name, raw string
		want      seen
		close     bool
	}{
		{"post with a body, spoofed address, cookies and hop headers",
			"POST /api/echo/v1/carts/c1/items?x=1&y=a%2Fb HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\n" +
				"Cookie: theme=dark\r\nKeep-Alive: timeout=5\r\nUpgrade: websocket\r\nX-Request-ID: fwd-test-1\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"x\":1}",
			seen{method: "POST", uri: "/v1/carts/c1/items?x=1&y=a%2Fb", body: `{"x":1}`, xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-1"}, false},
		{"the next request on the same connection",
			"GET /api/echo/v1/products/p2 HTTP/1.1\r\nHost: shop.example\r\nX-Request-ID: fwd-test-2\r\n\r\n",
			seen{method: "GET", uri: "/v1/products/p2", xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-2"}, false},
		{"two X-Forwarded-For headers",
			"GET /api/echo/v1/products/p3 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.7\r\nX-Request-ID: fwd-test-4\r\n\r\n",
			seen{method: "GET", uri: "/v1/products/p3", xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-4"}, false},
		{"three, in two spellings, a list among them",
			"GET /api/echo/v1/products/p4 HTTP/1.1\r\nHost: shop.example\r\nx-forwarded-for: 203.0.113.9\r\nAccept: */*\r\n" +
				"X-FORWARDED-FOR: 198.51.100.7, 198.51.100.8\r\nX-Forwarded-For: 192.0.2.1\r\nX-Request-ID: fwd-test-5\r\n\r\n",
			seen{method: "GET", uri: "/v1/products/p4", xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-5"}, false},
		{"a folded header",
			"GET /api/echo/v1/products/p5 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9,\r\n 198.51.100.7\r\nX-Request-ID: fwd-test-6\r\n\r\n",
			seen{method: "GET", uri: "/v1/products/p5", xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-6"}, false},
		{"a client that closes",
			"GET /api/echo/v1/products HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\nX-Request-ID: fwd-test-3\r\n\r\n",
			seen{method: "GET", uri: "/v1/products", xff: "127.0.0.1", xfh: "shop.example", proto: "http", id: "fwd-test-3"}, true},
	}
	for _, tc := range tests {
		resp := send(tc.raw)
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != tc.want.id {
			t.Fatalf("%s: got %d (request id %q); want 200 with %s", tc.name, resp.StatusCode, resp.Header.Get("X-Request-ID"), tc.want.id)
		}
		select {
		case s := <-got:
			if s != tc.want {
				t.Errorf("%s: the instance got %+v; want %+v", tc.name, s, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the instance got nothing", tc.name)
		}
		if resp.Close != tc.close {
			t.Errorf("%s: got Connection: close %v; want %v", tc.name, resp.Close, tc.close)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: got %v reading on; want the front to end the connection (EOF)", err)
	}
	// The access log names the path the client asked for, not the one sent upstream.
	if log := front.Logs(); !strings.Contains(log, "path=/api/echo/v1/carts/c1/items ") {
		t.Errorf("access log: want the client's path /api/echo/v1/carts/c1/items in %q", log)
	}
}

func TestYieldSettingIsChecked(t *testing.T) {
	env := map[string]string{"FRONT_YIELD_BEFORE_READ": "sometimes"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "FRONT_YIELD_BEFORE_READ must be true or false") {
		t.Fatalf("run with FRONT_YIELD_BEFORE_READ=sometimes: got %v; want an error naming the variable", err)
	}
}
