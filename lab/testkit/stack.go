package testkit

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"shoplab/internal/topology"
)

// Stack is a set of real services, built from this repository and run as processes, each with its own
// database, all registered in one Consul agent of the test's own.
type Stack struct {
	Consul   *Consul
	Services map[string][]*Service
	DSN      map[string]string
}

// AuthTestKEK is the key-encryption key auth gets in tests (base64 of 32 bytes; never used outside tests).
const AuthTestKEK = "c2hvcGxhYi10ZXN0LWtlay0xMjM0NTY3ODkwYWJjZGU="

// AuthEnv is what auth needs in tests beside its database and Consul: a cheap bcrypt cost and the test
// key-encryption key.
func AuthEnv() map[string]string {
	return map[string]string{"AUTH_BCRYPT_COST": "4", "AUTH_KEY_ENCRYPTION_KEY": AuthTestKEK, "AUTH_TRUSTED_CALLERS": topology.Entry + "," + TestIdentity}
}

// TestFingerprintKey is the key orders and payments fingerprint idempotent requests with in tests (base64 of
// 32 bytes; never used outside tests).
const TestFingerprintKey = "c2hvcGxhYi10ZXN0LWZpbmdlcnByaW50cy0xMjM0NTY="

// serviceEnv is what a service gets in tests besides its database and Consul address.
var serviceEnv = map[string]map[string]string{
	"auth":     AuthEnv(),
	"orders":   {"ORDERS_FINGERPRINT_KEY": TestFingerprintKey},
	"payments": {"PAYMENTS_FINGERPRINT_KEY": TestFingerprintKey},
}

// Defaults is what name needs in tests besides its database and Consul address (its secrets): a copy.
func Defaults(name string) map[string]string {
	out := map[string]string{}
	for k, v := range serviceEnv[name] {
		out[k] = v
	}
	return out
}

// StartStack starts names (for example "auth", "catalog") as binaries and waits until each is passing in Consul.
func StartStack(t testing.TB, names ...string) *Stack {
	t.Helper()
	s := &Stack{Consul: NewConsul(t), Services: map[string][]*Service{}, DSN: map[string]string{}}
	s.ApplyIntentions(t) // the mesh as the labs have it: default deny, the topology's calls allowed
	for _, n := range names {
		s.Add(t, n, nil)
	}
	return s
}

// Add starts one more instance of name (a replica shares the service's database) and waits until it is
// passing in Consul.
func (s *Stack) Add(t testing.TB, name string, env map[string]string) *Service {
	t.Helper()
	if svc, _ := topology.Default().Service(name); svc.Database && s.DSN[name] == "" {
		s.DSN[name] = NewDatabase(t)
	}
	full := Defaults(name)
	full["CONSUL_HTTP_ADDR"], full["DATABASE_URL"] = s.Consul.HTTPAddr, s.DSN[name]
	full["SERVICE_ID"] = fmt.Sprintf("%s-%d", name, len(s.Services[name])+1)
	for k, v := range env {
		full[k] = v
	}
	svc := Start(t, full["SERVICE_ID"], Binary(t, "services/"+name), full)
	s.Services[name] = append(s.Services[name], svc)
	s.WaitPassing(t, name, full["SERVICE_ID"], 10*time.Second)
	return svc
}

// URL is the address of the first instance of name.
func (s *Stack) URL(name string) string { return s.Services[name][0].URL }

// Env is what a service run in-process beside the stack needs: the stack's Consul and a fresh database.
func (s *Stack) Env(t testing.TB, name string) map[string]string {
	t.Helper()
	if s.DSN[name] == "" {
		s.DSN[name] = NewDatabase(t)
	}
	env := Defaults(name)
	env["CONSUL_HTTP_ADDR"], env["DATABASE_URL"] = s.Consul.HTTPAddr, s.DSN[name]
	return env
}

// WaitPassing waits until the instance id of service is passing in Consul.
func (s *Stack) WaitPassing(t testing.TB, service, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		entries, _, err := s.Consul.Client.Health().Service(service, "", true, nil)
		if err == nil {
			for _, e := range entries {
				if e.Service.ID == id {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (%s) not passing in Consul within %s (%v)", service, id, within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// User is a registered, logged-in account.
type User struct {
	ID, Email, Token string
}

var userSeq atomic.Int64

// NewUser registers and logs in a fresh account through auth at authURL.
func NewUser(t testing.TB, authURL string) User {
	t.Helper()
	email := fmt.Sprintf("shopper%d-%d@example.com", userSeq.Add(1), time.Now().UnixNano())
	r := Call(t, http.MethodPost, authURL+"/v1/users", JSON(t, map[string]string{"email": email, "password": "a long password", "name": "Shopper"}))
	if r.Status != http.StatusCreated {
		t.Fatalf("register %s: got %d %s", email, r.Status, r.Body)
	}
	r = Call(t, http.MethodPost, authURL+"/v1/sessions", JSON(t, map[string]string{"email": email, "password": "a long password"}))
	var s struct {
		Token string `json:"token"`
		User  struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	r.Decode(t, &s)
	if r.Status != http.StatusCreated || s.Token == "" {
		t.Fatalf("log in %s: got %d %s", email, r.Status, r.Body)
	}
	return User{ID: s.User.ID, Email: email, Token: s.Token}
}

// Bearer is the Authorization header pair for u.
func (u User) Bearer() []string { return []string{"Authorization", "Bearer " + u.Token} }

// NewAdmin registers an account through auth at the stack's first auth instance, gives it the admin role
// with auth's own operator command (the auth binary against the stack's auth database, as an operator runs
// it), and logs it in again so its token carries the role.
func (s *Stack) NewAdmin(t testing.TB) User {
	t.Helper()
	u := NewUser(t, s.URL("auth"))
	cmd := exec.Command(Binary(t, "services/auth"), "admin", "grant", "--email", u.Email)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+s.DSN["auth"], "AUTH_KEY_ENCRYPTION_KEY="+AuthTestKEK)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("auth admin grant: %v\n%s", err, out)
	}
	r := Call(t, http.MethodPost, s.URL("auth")+"/v1/sessions", JSON(t, map[string]string{"email": u.Email, "password": "a long password"}))
	var sess struct {
		Token string `json:"token"`
	}
	r.Decode(t, &sess)
	if r.Status != http.StatusCreated {
		t.Fatalf("log in admin %s: got %d %s", u.Email, r.Status, r.Body)
	}
	u.Token = sess.Token
	return u
}
