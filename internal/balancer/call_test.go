package balancer

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"shoplab/internal/consulx"
)

// TestDo: the one attempt loop, with fake sends and no network — what is retried, on which instance, what is
// ejected, and what stops a retry (the callee's policy, the mesh, the deadline, the caller's context, the
// budget).
func TestDo(t *testing.T) {
	var (
		reset   = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
		dialErr = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}
		policy  = consulx.RetryPolicy{Methods: []string{"GET"}, Routes: []string{"POST /v1/orders/*/cancel"}, Keyed: []string{"POST /v1/orders"}}
		ended   = make(chan struct{})
	)
	close(ended)
	tests := []struct {
		name         string
		instances    int
		call         Call
		sends        []error // what each attempt's send returns
		wantAttempts int
		wantRetries  int
		wantErr      error // nil: an instance answered
		wantEjected  int
	}{
		{"answered at once", 2, Call{Method: "GET", Path: "/v1/products"}, []error{nil}, 1, 0, nil, 0},
		{"reset, GET: ejected and sent elsewhere", 2, Call{Method: "GET", Path: "/v1/products"}, []error{reset, nil}, 2, 1, nil, 1},
		{"reset, a POST the policy does not name: not sent twice", 2, Call{Method: "POST", Path: "/v1/orders/o1/pay"}, []error{reset}, 1, 0, reset, 1},
		{"dial failed, POST: never sent, so sent elsewhere", 2, Call{Method: "POST", Path: "/v1/sessions"}, []error{dialErr, nil}, 2, 1, nil, 1},
		{"fasthttp's dial timeout, POST: never sent", 2, Call{Method: "POST", Path: "/v1/sessions"}, []error{fasthttp.ErrDialTimeout, nil}, 2, 1, nil, 1},
		{"fasthttp's closed connection: ejected", 2, Call{Method: "POST", Path: "/v1/sessions"}, []error{fasthttp.ErrConnectionClosed}, 1, 0, fasthttp.ErrConnectionClosed, 1},
		{"a route the policy names", 2, Call{Method: "POST", Path: "/v1/orders/o1/cancel"}, []error{reset, nil}, 2, 1, nil, 1},
		{"a keyed route with its key", 2, Call{Method: "POST", Path: "/v1/orders", Keyed: true}, []error{reset, nil}, 2, 1, nil, 1},
		{"a keyed route without a key", 2, Call{Method: "POST", Path: "/v1/orders"}, []error{reset}, 1, 0, reset, 1},
		{"refused by the mesh: no ejection, no retry", 2, Call{Method: "GET", Path: "/v1/products"}, []error{ErrDenied}, 1, 0, ErrDenied, 0},
		{"a slow instance (the attempt's timeout): sent elsewhere, not ejected", 2, Call{Method: "GET", Path: "/v1/products"}, []error{fasthttp.ErrTimeout, nil}, 2, 1, nil, 0},
		{"too little time left", 2, Call{Method: "GET", Path: "/v1/products", Deadline: time.Now().Add(MinAttempt / 2)}, []error{reset}, 1, 0, reset, 1},
		{"the caller's context ended", 2, Call{Method: "GET", Path: "/v1/products", Done: ended}, []error{reset}, 1, 0, reset, 1},
		{"the budget is spent", 2, Call{Method: "GET", Path: "/v1/products", Budget: NewBudget(0, 0)}, []error{reset}, 1, 0, reset, 1},
		{"the budget allows", 2, Call{Method: "GET", Path: "/v1/products", Budget: NewBudget(0, 1)}, []error{reset, nil}, 2, 1, nil, 1},
		{"both fail", 2, Call{Method: "GET", Path: "/v1/products"}, []error{reset, reset}, 2, 1, reset, 2},
		{"one instance: no other to try", 1, Call{Method: "GET", Path: "/v1/products"}, []error{reset}, 1, 0, reset, 1},
		{"no instance", 0, Call{Method: "GET", Path: "/v1/products"}, nil, 0, 0, ErrNoInstances, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Options{})
			var in []consulx.Instance
			for i, id := range []string{"a", "b"}[:tc.instances] {
				in = append(in, consulx.Instance{ID: id, Address: "127.0.0.1", Port: 9000 + i, Retry: policy})
			}
			b.Update(in)
			var sent []*Endpoint
			res := b.Do(tc.call, func(ep *Endpoint, attempt int) error {
				if attempt != len(sent) {
					t.Errorf("attempt: got %d; want %d", attempt, len(sent))
				}
				sent = append(sent, ep)
				if len(sent) > len(tc.sends) {
					t.Fatalf("attempt %d: got a send; want at most %d", len(sent), len(tc.sends))
				}
				return tc.sends[len(sent)-1]
			})
			ep, err, ejected := res.Answered, res.Err, res.Ejections()
			if len(sent) != tc.wantAttempts || res.Retries != tc.wantRetries || len(ejected) != tc.wantEjected {
				t.Errorf("got %d attempts, %d retries, %d ejected; want %d, %d, %d", len(sent), res.Retries, len(ejected), tc.wantAttempts, tc.wantRetries, tc.wantEjected)
			}
			for i, e := range ejected {
				if e.Endpoint != sent[i] || e.Endpoint.EjectedUntil().IsZero() || e.For <= 0 || e.Err == nil {
					t.Errorf("ejection %d: got %+v; want the instance of attempt %d, ejected, with its failure", i, e, i)
				}
			}
			if len(sent) == 2 && sent[0] == sent[1] {
				t.Errorf("the retry went to the instance that failed (%s); want the other", sent[0].ID)
			}
			switch {
			case tc.wantErr == nil && (err != nil || ep == nil || ep != sent[len(sent)-1]):
				t.Errorf("got %v from %v; want the answer of the last instance sent to", err, ep)
			case tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || ep != nil):
				t.Errorf("got %v from %v; want %v from none", err, ep, tc.wantErr)
			}
		})
	}
}
