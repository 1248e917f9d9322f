package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestNewAccountRetries: making the load's accounts survives a lab that answers 504 a few times, and gives up
// after the eighth failed attempt with the error.
func TestNewAccountRetries(t *testing.T) {
	tests := []struct {
		failures int32
		wantErr  bool
		wantTry  int32
	}{
		{failures: 0, wantTry: 1},
		{failures: 2, wantTry: 3},
		{failures: 11, wantTry: 12},
		{failures: 13, wantErr: true, wantTry: 12},
	}
	for _, tc := range tests {
		var tries atomic.Int32
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch r.URL.Path {
			case "/api/auth/v1/users":
				if tries.Add(1) <= tc.failures {
					w.WriteHeader(http.StatusGatewayTimeout)
					_, _ = w.Write([]byte(`{"error":{"code":"upstream_timeout","message":"auth did not answer in time","request_id":"x"}}`))
					return
				}
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(`{"id":"u1"}`))
			case "/api/auth/v1/sessions":
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(`{"token":"tok"}`))
			default:
				http.NotFound(w, r)
			}
		}))
		l := &loader{front: front.URL, client: front.Client(), accountPause: 10 * time.Millisecond}
		var stderr bytes.Buffer
		u, err := l.newAccount(context.Background(), &stderr)
		front.Close()
		if (err != nil) != tc.wantErr || tries.Load() != tc.wantTry {
			t.Errorf("%d failures: got error %v after %d attempts; want error %v after %d", tc.failures, err, tries.Load(), tc.wantErr, tc.wantTry)
		}
		if !tc.wantErr && (u == nil || u.token != "tok") {
			t.Errorf("%d failures: got shopper %+v; want one logged in", tc.failures, u)
		}
		if tc.failures > 0 && !strings.Contains(stderr.String(), "making an account failed (attempt 1 of 12)") {
			t.Errorf("%d failures: stderr %q; want the retry said", tc.failures, stderr.String())
		}
	}
}

// TestPauseAfter: a checkout shopper whose step failed waits what a 429 or 503 asks (at most 5 s), else a second.
func TestPauseAfter(t *testing.T) {
	fail := func(status int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &failedStep{a: answer{status: status, header: h}, err: errors.New("failed")}
	}
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"503 asking 2 s", fail(503, "2"), 2 * time.Second},
		{"503 asking 30 s", fail(503, "30"), 5 * time.Second},
		{"429 asking 1 s", fail(429, "1"), time.Second},
		{"503 asking nothing", fail(503, ""), time.Second},
		{"502 asking 3 s", fail(502, "3"), time.Second},
		{"no answer", fail(0, ""), time.Second},
		{"wrapped", fmt.Errorf("place order: %w", fail(503, "3")), 3 * time.Second},
		{"not a step", errors.New("other"), time.Second},
	}
	for _, tc := range tests {
		if got := pauseAfter(tc.err); got != tc.want {
			t.Errorf("%s: got %s; want %s", tc.name, got, tc.want)
		}
	}
}
