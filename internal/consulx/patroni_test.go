package consulx

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestSyncStandbyAddr: the synchronous standby's address from Patroni's keys, and none whenever they do not
// name one that is a member other than the leader.
func TestSyncStandbyAddr(t *testing.T) {
	const prefix = "shoplab/catalog-db/"
	member := func(name, url string) *api.KVPair {
		return &api.KVPair{Key: prefix + "members/" + name, Value: []byte(`{"conn_url":"` + url + `","api_url":"http://x:8008/patroni","state":"running","role":"replica"}`)}
	}
	sync := func(v string) *api.KVPair { return &api.KVPair{Key: prefix + "sync", Value: []byte(v)} }
	members := []*api.KVPair{member("catalog-1", "postgres://10.0.0.11:5432/postgres"), member("catalog-2", "postgres://10.0.0.12:5432/postgres")}
	tests := []struct {
		name  string
		pairs api.KVPairs
		want  string
	}{
		{"no keys", nil, ""},
		{"no sync key", members, ""},
		{"the standby", append(members, sync(`{"leader":"catalog-1","sync_standby":"catalog-2"}`)), "10.0.0.12:5432"},
		{"none: the primary runs alone", append(members, sync(`{"leader":"catalog-1","sync_standby":null}`)), ""},
		{"the leader itself", append(members, sync(`{"leader":"catalog-1","sync_standby":"catalog-1"}`)), ""},
		{"not a member", append(members, sync(`{"leader":"catalog-1","sync_standby":"catalog-9"}`)), ""},
		{"the first of several", append(members, sync(`{"leader":"catalog-1","sync_standby":"catalog-9, catalog-2"}`)), "10.0.0.12:5432"},
		{"unreadable", append(members, sync(`{`)), ""},
		{"a member without an address", append(api.KVPairs{member("catalog-3", "")}, sync(`{"leader":"catalog-1","sync_standby":"catalog-3"}`)), ""},
	}
	for _, tt := range tests {
		if got := syncStandbyAddr(prefix, tt.pairs); got != tt.want {
			t.Errorf("%s: got %q; want %q", tt.name, got, tt.want)
		}
	}
}
