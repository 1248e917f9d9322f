package testkit

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"shoplab/internal/netx"
)

// Resp is an HTTP answer read whole.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// Decode unmarshals the body into v, failing the test if it is not JSON.
func (r Resp) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not JSON (%v): %s", r.Status, err, r.Body)
	}
}

// String is the body as text.
func (r Resp) String() string { return string(r.Body) }

var client = &http.Client{Timeout: 30 * time.Second}

// Call sends method url with body; headers come in pairs ("Authorization", "Bearer x"). A non-empty body is
// sent as application/json unless a Content-Type pair is given. A mesh service (an https URL testkit started)
// is called over mutual TLS as TestIdentity.
func Call(t testing.TB, method, url, body string, headers ...string) Resp {
	t.Helper()
	return call(t, TestIdentity, method, url, body, headers...)
}

// CallAs is Call presenting, to a mesh service, the certificate of the mesh service named identity: an
// internal route answers only the services it names.
func CallAs(t testing.TB, identity, method, url, body string, headers ...string) Resp {
	t.Helper()
	return call(t, identity, method, url, body, headers...)
}

func call(t testing.TB, identity, method, url, body string, headers ...string) Resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := clientAs(t, req.URL.Host, identity).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return Resp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// JSON marshals v for a request body.
func JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ErrorBody is the API.md error shape.
type ErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// WantError checks that r is an API.md error with status and code (code "" accepts any code), a message and
// the request id of the X-Request-ID header; it returns the message.
func WantError(t testing.TB, r Resp, status int, code string) string {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status: got %d; want %d (body %s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type: got %q; want application/json", ct)
	}
	// The error object has exactly code, message and request_id; other top-level fields may sit beside it
	// (a declined payment carries the payment, a declined order the order).
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &top); err != nil || top["error"] == nil {
		t.Fatalf("error body: got %s; want {\"error\":{code,message,request_id}}", r.Body)
	}
	var eb ErrorBody
	dec := json.NewDecoder(bytes.NewReader(top["error"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb.Error); err != nil {
		t.Fatalf("error object: got %s; want exactly code, message and request_id (%v)", top["error"], err)
	}
	if code != "" && eb.Error.Code != code {
		t.Fatalf("error code: got %q; want %q (message %q)", eb.Error.Code, code, eb.Error.Message)
	}
	if eb.Error.Message == "" {
		t.Fatalf("error message: got empty; want a message")
	}
	if id := r.Header.Get("X-Request-ID"); eb.Error.RequestID == "" || eb.Error.RequestID != id {
		t.Fatalf("request_id: got %q; want the X-Request-ID header %q", eb.Error.RequestID, id)
	}
	return eb.Error.Message
}

// UserTimeout reads c's TCP_USER_TIMEOUT back from the kernel: how long data sent on it may stay
// unacknowledged before the connection breaks.
func UserTimeout(t testing.TB, c net.Conn) time.Duration {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no socket", c)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	d, err := netx.UserTimeout(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
