package consulx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/consul/api"
)

// IntentionSource marks the intentions shoplab writes (in their description), so an operator tells them from
// their own.
const IntentionSource = "shoplab topology"

// DesiredIntentions turns calls (each service → the services it calls) into Consul's service-intentions
// config entries: a wildcard entry denying every call, and per called service an entry allowing exactly its
// callers (and extra, when given, to call every service: a test identity).
func DesiredIntentions(calls map[string][]string, extra ...string) []*api.ServiceIntentionsConfigEntry {
	callers := map[string][]string{}
	for src, dsts := range calls {
		for _, dst := range dsts {
			callers[dst] = append(callers[dst], src)
		}
		if _, ok := callers[src]; !ok && len(extra) > 0 {
			callers[src] = nil // extra may call every service, those nobody else calls too
		}
	}
	out := []*api.ServiceIntentionsConfigEntry{{
		Kind: api.ServiceIntentions, Name: "*",
		Sources: []*api.SourceIntention{{Name: "*", Action: api.IntentionActionDeny, Description: IntentionSource + ": deny by default"}},
	}}
	names := make([]string, 0, len(callers))
	for dst := range callers {
		names = append(names, dst)
	}
	sort.Strings(names)
	for _, dst := range names {
		srcs := append(slices.Clone(callers[dst]), extra...)
		sort.Strings(srcs)
		srcs = slices.Compact(srcs)
		if len(srcs) == 0 {
			continue
		}
		e := &api.ServiceIntentionsConfigEntry{Kind: api.ServiceIntentions, Name: dst}
		for _, src := range srcs {
			e.Sources = append(e.Sources, &api.SourceIntention{Name: src, Action: api.IntentionActionAllow,
				Description: fmt.Sprintf("%s: %s calls %s", IntentionSource, src, dst)})
		}
		out = append(out, e)
	}
	return out
}

// ApplyIntentions writes DesiredIntentions(calls, extra...) into Consul, replacing the entries of the same
// names (the operator's intentions on other services are left alone).
//
// A freshly elected leader refuses intention writes for a moment (it is still moving legacy intentions to
// config entries): a refused write is tried again, every 100 ms, for at most 30 s.
func ApplyIntentions(ctx context.Context, client *api.Client, calls map[string][]string, extra ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, e := range DesiredIntentions(calls, extra...) {
		for {
			_, _, err := client.ConfigEntries().Set(e, (&api.WriteOptions{}).WithContext(ctx))
			if err == nil {
				break
			}
			var se api.StatusError
			if !errors.As(err, &se) || se.Code < 500 || ctx.Err() != nil {
				return fmt.Errorf("write the intentions of %s: %w", e.Name, err)
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}
	return nil
}

// Intention is one source → destination rule as Consul holds it.
type Intention struct {
	Source, Destination, Action, Description string
}

// ListIntentions reads every service-intentions config entry, sorted by destination then source.
func ListIntentions(ctx context.Context, client *api.Client) ([]Intention, error) {
	entries, _, err := client.ConfigEntries().List(api.ServiceIntentions, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list intentions: %w", err)
	}
	var out []Intention
	for _, ce := range entries {
		e, ok := ce.(*api.ServiceIntentionsConfigEntry)
		if !ok {
			continue
		}
		for _, s := range e.Sources {
			out = append(out, Intention{Source: s.Name, Destination: e.Name, Action: string(s.Action), Description: s.Description})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Destination != out[j].Destination {
			return out[i].Destination < out[j].Destination
		}
		return out[i].Source < out[j].Source
	})
	return out, nil
}
