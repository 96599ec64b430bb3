package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/history"
)

// Every node's part of the overview: on a cluster each node answers a
// summary request (Config.Peers on the asking node, Summary on the others)
// with its NodeSummary; the overview lists the nodes and sums their hubs,
// groups and latency.

// NodeSummary is one node's part of the overview: its hubs and biggest
// groups by namespace, its counters and its delivery latency.
type NodeSummary struct {
	NodeID     string             `json:"node_id"`
	Namespaces []NamespaceView    `json:"namespaces"`
	Counters   map[string]float64 `json:"counters"`
	Latency    LatencyView        `json:"latency"`
}

// NodeView is one node in the overview: its connections, counters (the
// page turns two polls into its rates) and delivery latency; Error says why
// a live node (from heartbeats) has none.
type NodeView struct {
	NodeID      string             `json:"node_id"`
	Local       bool               `json:"local"` // the node that answered the overview
	Connections int                `json:"connections"`
	Counters    map[string]float64 `json:"counters"`
	Latency     LatencyView        `json:"latency"`
	Error       string             `json:"error,omitempty"`
}

// nodeCounters are the counters a node summary carries.
var nodeCounters = []string{"messages_in", "messages_out", "bytes_in", "bytes_out", "slow_consumer_closes"}

func (s NodeSummary) view(local bool) NodeView {
	v := NodeView{NodeID: s.NodeID, Local: local, Counters: s.Counters, Latency: s.Latency}
	for _, ns := range s.Namespaces {
		v.Connections += ns.Connections
	}
	if v.Counters == nil {
		v.Counters = map[string]float64{}
	}
	if v.Latency.Buckets == nil {
		v.Latency.Buckets = []LatencyBucket{}
	}
	return v
}

// summarize reads this node's hubs and metrics into o (its counters and
// event handlers) and returns its summary.
func (d *Dashboard) summarize(o *Overview) NodeSummary {
	o.Counters, o.Upstream = map[string]float64{}, UpstreamView{Requests: map[string]float64{}}
	d.readMetrics(o)
	s := NodeSummary{NodeID: d.cfg.Namespaces[0].Node.ID(), Counters: map[string]float64{}, Latency: o.Latency}
	for _, k := range nodeCounters {
		s.Counters[k] = o.Counters[k]
	}
	for _, ns := range d.cfg.Namespaces {
		s.Namespaces = append(s.Namespaces, namespaceView(ns))
	}
	return s
}

// Summary returns this node's summary as JSON, for the other nodes'
// dashboards (the cluster serves it).
func (d *Dashboard) Summary() []byte {
	var o Overview
	b, err := json.Marshal(d.summarize(&o))
	if err != nil {
		return nil
	}
	return b
}

// peerCacheFor is how long the other nodes' summaries serve every poll:
// several viewers do not multiply the requests.
const peerCacheFor = time.Second

type peerCache struct {
	mu      sync.Mutex
	at      time.Time
	answers map[string][]byte
	missing map[string]string
}

// peers returns the other nodes' summaries (Config.Peers), at most one
// request of every node per peerCacheFor; the maps are the caller's.
func (d *Dashboard) peers(ctx context.Context) (map[string][]byte, map[string]string) {
	c := &d.peerCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil || time.Since(c.at) >= peerCacheFor {
		c.answers, c.missing = d.cfg.Peers(ctx)
		c.at = time.Now()
	}
	return maps.Clone(c.answers), maps.Clone(c.missing)
}

// streamsCacheFor is how long the history streams panel serves every
// poll: the embedded log's scan holds the log's lock over every stream it
// keeps (about 0.3 s for a million streams), JetStream's costs requests;
// viewers must not multiply either.
const streamsCacheFor = 5 * time.Second

type streamsCache struct {
	mu  sync.Mutex
	at  time.Time
	out []history.StreamStat // shared by the polls: read only
}

// streams returns the biggest history streams (Config.Streams), read at
// most once per streamsCacheFor.
func (d *Dashboard) streams(ctx context.Context) []history.StreamStat {
	c := &d.streamsCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out == nil || d.now().Sub(c.at) >= streamsCacheFor {
		c.out = d.cfg.Streams(ctx, maxStreamsShown)
		if c.out == nil {
			c.out = []history.StreamStat{}
		}
		// From the end of the read: JetStream's own cache (as long),
		// filled during it, has expired by the next one, so the two do
		// not add up to twice the staleness.
		c.at = d.now()
	}
	return c.out
}

// merge sums the nodes' summaries: by namespace, each hub's counts (the
// maxHubsShown with the most connections), the biggest groups (members
// summed by hub and group: a group among the biggest on no single node may
// be missed) and the latency histograms.
func merge(sums []NodeSummary) ([]NamespaceView, LatencyView) {
	lat := LatencyView{Buckets: []LatencyBucket{}}
	var order []string
	byName := map[string]*NamespaceView{}
	hubs := map[string]map[string]*HubView{}
	groups := map[string]map[[2]string]int{}
	for _, s := range sums {
		lat.merge(s.Latency)
		for _, ns := range s.Namespaces {
			v := byName[ns.Name]
			if v == nil {
				v = &NamespaceView{Name: ns.Name}
				byName[ns.Name] = v
				hubs[ns.Name], groups[ns.Name] = map[string]*HubView{}, map[[2]string]int{}
				order = append(order, ns.Name)
			}
			v.Connections += ns.Connections
			v.HubCount = max(v.HubCount, ns.HubCount)
			for _, h := range ns.Hubs {
				m := hubs[ns.Name][h.Name]
				if m == nil {
					m = &HubView{Name: h.Name}
					hubs[ns.Name][h.Name] = m
				}
				m.Connections += h.Connections
				m.Users += h.Users
				m.Groups += h.Groups
			}
			for _, g := range ns.TopGroups {
				groups[ns.Name][[2]string{g.Hub, g.Group}] += g.Members
			}
		}
	}
	out := make([]NamespaceView, 0, len(order))
	for _, name := range order {
		v := byName[name]
		v.Hubs = make([]HubView, 0, len(hubs[name]))
		for _, h := range hubs[name] {
			v.Hubs = append(v.Hubs, *h)
		}
		v.HubCount = max(v.HubCount, len(v.Hubs))
		slices.SortFunc(v.Hubs, func(a, b HubView) int {
			return cmp.Or(cmp.Compare(b.Connections, a.Connections), cmp.Compare(a.Name, b.Name))
		})
		v.Hubs = v.Hubs[:min(len(v.Hubs), maxHubsShown)]
		v.TopGroups = make([]TopGroup, 0, len(groups[name]))
		for k, n := range groups[name] {
			v.TopGroups = append(v.TopGroups, TopGroup{Hub: k[0], Group: k[1], Members: n})
		}
		v.TopGroups = topN(v.TopGroups, maxGroupsShown)
		out = append(out, *v)
	}
	return out, lat
}

// merge adds o's counts to v, bucket by bucket (same bounds: every node
// has the same buckets; a bucket v lacks is added).
func (v *LatencyView) merge(o LatencyView) {
	for _, b := range o.Buckets {
		i := slices.IndexFunc(v.Buckets, func(x LatencyBucket) bool { return x.Le == b.Le })
		if i < 0 {
			v.Buckets = append(v.Buckets, b)
			continue
		}
		v.Buckets[i].Count += b.Count
	}
	slices.SortFunc(v.Buckets, func(a, b LatencyBucket) int { return cmp.Compare(a.Le, b.Le) })
	v.Count += o.Count
	v.Sum += o.Sum
}
