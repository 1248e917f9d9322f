package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestAccessLogMatchesHclog: the gateway's own access-log line is byte for byte the line hclog writes for the
// same fields, for plain values, values hclog quotes, values it escapes (which go through hclog), and lines
// with and without an upstream or an error.
func TestAccessLogMatchesHclog(t *testing.T) {
	at := time.Date(2026, 12, 2, 18, 4, 5, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		e    accessEntry
	}{
		{"proxied", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/v1/products"), route: "GET " + apiRoute, status: 200,
			took: 1234567 * time.Nanosecond, bytes: 512, requestID: "abc", service: "catalog", upstream: "catalog-1", upstreamStatus: 200}},
		{"retried", accessEntry{method: []byte("POST"), path: []byte("/api/orders/v1/orders"), route: "POST " + apiRoute, status: 201,
			took: 30 * time.Millisecond, bytes: 9, requestID: "r-1.2:3", service: "orders", upstream: "orders-2", upstreamStatus: 201, retries: 1}},
		{"no instance", accessEntry{method: []byte("GET"), path: []byte("/api/cart/v1/cart"), route: "GET " + apiRoute, status: 503,
			took: time.Microsecond, bytes: 80, requestID: "x", service: "cart", err: "no passing instance"}},
		{"unmatched", accessEntry{method: []byte("BREW"), path: []byte("/api/"), route: "unmatched", status: 405, took: 0, requestID: "y"}},
		{"empty value", accessEntry{method: []byte("GET"), path: []byte("/api/x/"), route: "unmatched", status: 404, requestID: ""}},
		{"space in the path", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/a b,c"), route: "GET " + apiRoute, status: 404, requestID: "z", service: "catalog"}},
		{"newline in the path", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/a\nb"), route: "GET " + apiRoute, status: 404, requestID: "z"}},
		{"quote in the error", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/x"), route: "GET " + apiRoute, status: 502, requestID: "z",
			service: "catalog", upstream: "catalog-1", err: `dial "x": refused`}},
		{"not ascii", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/caf\u00e9"), route: "GET " + apiRoute, status: 404, requestID: "z"}},
		{"control character", accessEntry{method: []byte("GET"), path: []byte("/api/catalog/\x01"), route: "GET " + apiRoute, status: 404, requestID: "z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got bytes.Buffer
			reference := hclog.New(&hclog.LoggerOptions{Name: "front", Output: &want, TimeFormat: time.RFC3339Nano,
				TimeFn: func() time.Time { return at }}).Named("http")
			newAccessLog(reference, nil, reference.Name()).write(at, &tc.e) // nil: every line through hclog
			ours := hclog.New(&hclog.LoggerOptions{Name: "front", Output: &got, TimeFormat: time.RFC3339Nano,
				TimeFn: func() time.Time { return at }}).Named("http")
			newAccessLog(ours, &got, ours.Name()).write(at, &tc.e)
			if got.String() != want.String() {
				t.Fatalf("got  %q;\nwant %q", got.String(), want.String())
			}
		})
	}
}

// BenchmarkAccessLog compares writing one access line ourselves with writing it through hclog.
func BenchmarkAccessLog(b *testing.B) {
	e := accessEntry{method: []byte("GET"), path: []byte("/api/catalog/v1/products"), route: "GET " + apiRoute, status: 200,
		took: 1234567 * time.Nanosecond, bytes: 512, requestID: "abcdefghijklmnopqrstuvwxyz", service: "catalog", upstream: "catalog-1", upstreamStatus: 200}
	var out bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Name: "front", Output: &out, TimeFormat: time.RFC3339Nano}).Named("http")
	for _, c := range []struct {
		name string
		l    *accessLog
	}{{"ours", newAccessLog(log, &out, log.Name())}, {"hclog", newAccessLog(log, nil, log.Name())}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out.Reset()
				c.l.write(time.Now(), &e)
			}
		})
	}
}
