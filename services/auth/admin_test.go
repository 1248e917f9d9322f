package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"shoplab/lab/testkit"
)

// operator runs "auth admin args…" in-process with auth's environment, as the operator does on its machine.
func operator(t *testing.T, a *authUnderTest, args ...string) (string, error) {
	t.Helper()
	env := testkit.AuthEnv()
	env["DATABASE_URL"] = a.dsn
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"admin"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

func me(t *testing.T, base, token string) (int, user) {
	t.Helper()
	r := testkit.Call(t, "GET", base+"/v1/users/me", "", "Authorization", "Bearer "+token)
	var u user
	if r.Status == 200 {
		r.Decode(t, &u)
	}
	return r.Status, u
}

// TestAdminRole: the operator command grants the role (it shows in /v1/users/me and in the next token), mints
// a token for an admin, and revoking the role refuses the admin's tokens at once.
func TestAdminRole(t *testing.T) {
	a := startAuth(t, nil)
	u := register(t, a.URL, "ops@example.com", "operator password", "Ops")
	if u.Roles == nil || len(u.Roles) != 0 {
		t.Fatalf("new user's roles: got %#v; want []", u.Roles)
	}
	before := login(t, a.URL, "ops@example.com", "operator password")
	if _, got := me(t, a.URL, before.Token); len(got.Roles) != 0 {
		t.Fatalf("roles before grant: got %v; want none", got.Roles)
	}

	out, err := operator(t, a, "grant", "--email", "OPS@example.com")
	if err != nil || !strings.Contains(out, "ops@example.com") {
		t.Fatalf("grant: got %q, %v; want a confirmation naming the user", out, err)
	}
	if out, err := operator(t, a, "grant", "--email", "ops@example.com"); err != nil {
		t.Fatalf("grant again: got %q, %v; want success (idempotent)", out, err)
	}
	admin := login(t, a.URL, "ops@example.com", "operator password")
	if !slices.Equal(admin.User.Roles, []string{"admin"}) {
		t.Fatalf("login after grant: roles %v; want [admin]", admin.User.Roles)
	}
	if _, got := me(t, a.URL, admin.Token); !slices.Equal(got.Roles, []string{"admin"}) {
		t.Fatalf("me after grant: roles %v; want [admin]", got.Roles)
	}
	if out, err := operator(t, a, "list"); err != nil || !strings.Contains(out, "ops@example.com") {
		t.Fatalf("list: got %q, %v; want ops@example.com listed", out, err)
	}
	minted, err := operator(t, a, "token", "--email", "ops@example.com")
	minted = strings.TrimSpace(minted)
	if err != nil || strings.Count(minted, ".") != 2 {
		t.Fatalf("token: got %q, %v; want one JWT on stdout", minted, err)
	}
	if st, got := me(t, a.URL, minted); st != 200 || !slices.Equal(got.Roles, []string{"admin"}) {
		t.Fatalf("minted token: got %d roles %v; want 200 [admin]", st, got.Roles)
	}

	out, err = operator(t, a, "revoke", "--email", "ops@example.com")
	if err != nil || !strings.Contains(out, "session(s) revoked") {
		t.Fatalf("revoke: got %q, %v", out, err)
	}
	for name, tok := range map[string]string{"login token": admin.Token, "minted token": minted, "token from before the grant": before.Token} {
		testkit.WantError(t, testkit.Call(t, "GET", a.URL+"/v1/users/me", "", "Authorization", "Bearer "+tok), 401, "token_revoked")
		_ = name
	}
	after := login(t, a.URL, "ops@example.com", "operator password")
	if len(after.User.Roles) != 0 {
		t.Fatalf("login after revoke: roles %v; want none", after.User.Roles)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"grant", "--email", "nobody@example.com"}, "no user"},
		{[]string{"grant", "--email", "not an email"}, "--email"},
		{[]string{"grant"}, "--email"},
		{[]string{"token", "--email", "ops@example.com"}, "not an admin"},
		{[]string{"promote", "--email", "ops@example.com"}, "unknown command"},
		{[]string{"grant", "--email", "ops@example.com", "extra"}, "unexpected argument"},
		{nil, "no command"},
	} {
		out, err := operator(t, a, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("admin %v: got %q, %v; want an error mentioning %q", tc.args, out, err, tc.want)
		}
	}
}
