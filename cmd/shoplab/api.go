package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// shopper talks to the shop through the front, as an outside client does (API.md).
type shopper struct {
	front string
	http  *http.Client
	token string
}

func newShopper(front string, client *http.Client) *shopper {
	return &shopper{front: strings.TrimRight(front, "/"), http: client}
}

// answer is an HTTP answer read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// errorCode is the API.md error code of the answer, if any.
func (a answer) errorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

func (a answer) decode(v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("answer is not the JSON expected (%v): %.200s", err, a.body)
	}
	return nil
}

func (s *shopper) call(ctx context.Context, method, path string, body any, headers ...string) (answer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.front+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// expect calls and checks the status.
func (s *shopper) expect(ctx context.Context, want int, method, path string, body any, headers ...string) (answer, error) {
	a, err := s.call(ctx, method, path, body, headers...)
	if err != nil {
		return a, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if a.status != want {
		return a, fmt.Errorf("%s %s: got %d %.300s; want %d", method, path, a.status, a.body, want)
	}
	return a, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// register makes a fresh account and logs it in. Registration is rate limited per client address (API.md):
// a 429 is waited out (its Retry-After, at most twice), as a patient client would.
func (s *shopper) register(ctx context.Context) (string, error) {
	email := fmt.Sprintf("shopper-%s@example.com", randomHex(6))
	body := map[string]string{"email": email, "password": "correct horse battery", "name": "Smoke Shopper"}
	for try := 0; ; try++ {
		a, err := s.call(ctx, "POST", "/api/auth/v1/users", body)
		if err == nil && a.status == 429 && try < 2 {
			wait := retryAfter(a)
			fmt.Fprintf(os.Stderr, "shoplab: registration is rate limited; waiting %s as Retry-After asks\n", wait)
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("POST /api/auth/v1/users: %w", err)
		}
		if a.status != 201 {
			return "", fmt.Errorf("POST /api/auth/v1/users: got %d %.300s; want 201", a.status, a.body)
		}
		return email, s.login(ctx, email)
	}
}

// retryAfter is an answer's Retry-After in seconds, between 1 s and 2 minutes.
func retryAfter(a answer) time.Duration {
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil {
		n = 5
	}
	return time.Duration(min(max(n, 1), 120)) * time.Second
}

func (s *shopper) login(ctx context.Context, email string) error {
	a, err := s.expect(ctx, 201, "POST", "/api/auth/v1/sessions", map[string]string{"email": email, "password": "correct horse battery"})
	if err != nil {
		return err
	}
	var sess struct {
		Token string `json:"token"`
	}
	if err := a.decode(&sess); err != nil {
		return err
	}
	s.token = sess.Token
	return nil
}

type product struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"`
	Stock      int    `json:"stock"`
}

type order struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	TotalCents int64  `json:"total_cents"`
}

func checkoutBody(cardNumber string) map[string]any {
	return map[string]any{
		"shipping_address": map[string]string{"name": "Smoke Shopper", "line1": "1 Test Street", "city": "Testville", "postal_code": "12345", "country": "US"},
		"card":             map[string]any{"number": cardNumber, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"},
	}
}
