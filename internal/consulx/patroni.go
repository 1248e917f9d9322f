package consulx

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// SyncStandby follows which member of a Patroni cluster is its synchronous standby, and where that member's
// PostgreSQL listens, from the keys Patroni keeps in Consul under the cluster's prefix (namespace and scope,
// e.g. "shoplab/catalog-db/"): "sync" names the standby ({"leader": …, "sync_standby": …}) and
// "members/<name>" holds each member's conn_url. While Consul is unreachable it keeps what it last saw.
type SyncStandby struct {
	state *loopState
	addr  atomic.Pointer[string]
}

// WatchSyncStandby starts following the synchronous standby of the cluster under prefix until ctx ends.
func WatchSyncStandby(ctx context.Context, client *api.Client, prefix string, log hclog.Logger, o WatchOptions) *SyncStandby {
	o = o.withDefaults()
	s := &SyncStandby{state: newLoopState()}
	none := ""
	s.addr.Store(&none)
	log = log.Named("patroni").With("prefix", prefix)
	go runBlocking(ctx, o, s.state, log, func(ctx context.Context, opts *api.QueryOptions) (uint64, error) {
		pairs, meta, err := client.KV().List(prefix, opts)
		if err != nil {
			return 0, err
		}
		addr := syncStandbyAddr(prefix, pairs)
		if old := s.addr.Swap(&addr); *old != addr {
			log.Info("synchronous standby", "address", addr)
		}
		return meta.LastIndex, nil
	})
	return s
}

// Addr is the synchronous standby's PostgreSQL address (host:port), or false while the cluster has none (or
// Consul has not answered yet).
func (s *SyncStandby) Addr() (string, bool) {
	a := *s.addr.Load()
	return a, a != ""
}

// syncStandbyAddr reads the synchronous standby's address from Patroni's keys under prefix ("" for none).
func syncStandbyAddr(prefix string, pairs api.KVPairs) string {
	var sync struct {
		Leader  string `json:"leader"`
		Standby string `json:"sync_standby"`
	}
	members := map[string]string{}
	for _, p := range pairs {
		key := strings.TrimPrefix(p.Key, prefix)
		switch {
		case key == "sync":
			_ = json.Unmarshal(p.Value, &sync)
		case strings.HasPrefix(key, "members/"):
			var m struct {
				ConnURL string `json:"conn_url"`
			}
			if json.Unmarshal(p.Value, &m) == nil {
				if u, err := url.Parse(m.ConnURL); err == nil && u.Host != "" {
					members[strings.TrimPrefix(key, "members/")] = u.Host
				}
			}
		}
	}
	for _, name := range strings.Split(sync.Standby, ",") {
		if name = strings.TrimSpace(name); name != "" && name != sync.Leader && members[name] != "" {
			return members[name]
		}
	}
	return ""
}
