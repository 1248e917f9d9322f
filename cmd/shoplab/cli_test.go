package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	env := func(string) string { return "" }
	tests := []struct {
		args  []string
		usage bool
		want  string
	}{
		{nil, true, "no command"},
		{[]string{"launch"}, true, `unknown command "launch"`},
		{[]string{"load", "--rate", "0"}, true, "--rate"},
		{[]string{"load", "--duration", "2h"}, true, "--duration"},
		{[]string{"load", "--users", "0"}, true, "--users"},
		{[]string{"smoke", "--nope"}, true, "flag provided but not defined"},
		{[]string{"smoke", "extra"}, true, "unexpected argument"},
		{[]string{"lab", "--port-offset", "-1"}, true, "--port-offset"},
		{[]string{"lab", "--replicas", "catalog=zero"}, true, "replicas"},
		{[]string{"bench", "--part", "everything"}, true, "--part"},
		{[]string{"bench", "--rounds", "0"}, true, "--rounds"},
		{[]string{"bench", "--duration", "1h"}, true, "--duration"},
		{[]string{"bench", "--shoppers", "4,lots"}, true, "--shoppers"},
		{[]string{"bench", "--checkout-duration", "0s"}, true, "--checkout-duration"},
		{[]string{"bench", "--compare-env", "NOEQUALS"}, true, "KEY=VALUE"},
		{[]string{"status", "--topology", "/nonexistent/topology.yml"}, true, "/nonexistent/topology.yml"},
		{[]string{"status", "--consul", "127.0.0.1:1"}, false, "is the lab running"},
		{[]string{"smoke", "--front", "http://127.0.0.1:1"}, false, "front is ready"},
	}
	for _, tc := range tests {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, env, &out, &errOut)
		var u usageError
		if err == nil || errors.As(err, &u) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("shoplab %v: got %v (usage error %v); want an error mentioning %q (usage error %v)", tc.args, err, errors.As(err, &u), tc.want, tc.usage)
		}
	}
}
