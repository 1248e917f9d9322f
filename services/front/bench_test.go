package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"shoplab/internal/consulx"
	"shoplab/lab/testkit"
)

// BenchmarkGateway measures what a request through the front costs over calling the backend directly: one
// small JSON answer, keep-alive connections, parallel clients. Run it with
//
//	go test -run '^$' -bench Gateway -benchtime 20000x ./services/front
//
// and compare front/op with direct/op in the same run (absolute figures vary with the machine).
func BenchmarkGateway(b *testing.B) {
	consul := testkit.NewConsul(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"products":[{"id":"prd_1","name":"Burr Coffee Grinder","price_cents":8900,"currency":"USD"}],"next_cursor":null}` + "\n")
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})}
	go func() { _ = backend.Serve(ln) }()
	b.Cleanup(func() { _ = backend.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	reg, err := consulx.Register(context.Background(), consul.Client, consulx.Registration{
		Name: "bench", ID: "bench-1", Address: "127.0.0.1", Port: port, Public: true, InitialPassing: true, CheckPath: "/",
	}, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	front := testkit.Run(b, "front", run, map[string]string{"CONSUL_HTTP_ADDR": consul.HTTPAddr, "LOG_LEVEL": "error"})

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}, Timeout: 10 * time.Second}
	get := func(b *testing.B, url string) {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%s: got %d", url, resp.StatusCode)
		}
	}
	// Warm up: the gateway's first request to a service starts its discovery watch.
	for range 100 {
		get(b, front.URL+"/api/bench/v1/products")
	}
	for _, c := range []struct{ name, url string }{
		{"direct", fmt.Sprintf("http://127.0.0.1:%d/v1/products", port)},
		{"front", front.URL + "/api/bench/v1/products"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(8)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, c.url)
				}
			})
		})
	}
}
