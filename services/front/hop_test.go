package main

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
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
