package main

import (
	"strings"
	"testing"
)

func TestWantTags(t *testing.T) {
	m := &patroniRegistration{}
	m.Consul.ServiceTags = []string{"patroni"}
	tests := []struct {
		role string
		want string // "" when Patroni does not register the role
	}{
		{"master", "patroni master primary"},
		{"primary", "patroni primary master"},
		{"replica", "patroni replica"},
		{"standby_leader", "patroni standby-leader"},
		{"uninitialized", ""},
	}
	for _, tc := range tests {
		tags, ok := m.wantTags(tc.role)
		if got := strings.Join(tags, " "); got != tc.want || ok != (tc.want != "") {
			t.Errorf("wantTags(%q): got %q, %v; want %q", tc.role, got, ok, tc.want)
		}
	}
	for _, tc := range []struct {
		a, b []string
		same bool
	}{
		{[]string{"patroni", "master", "primary"}, []string{"primary", "patroni", "master"}, true},
		{[]string{"patroni", "replica"}, []string{"patroni", "master", "primary"}, false},
		{nil, []string{"patroni"}, false},
	} {
		if got := sameTags(tc.a, tc.b); got != tc.same {
			t.Errorf("sameTags(%v, %v): got %v; want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
