package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// syncBuffer is a log destination safe for the NATS goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDifferingParts(t *testing.T) {
	mine := map[string]string{"access_keys": "1", "hubs": "2", "limits": "3"}
	for _, tc := range []struct {
		theirs map[string]string
		want   []string
	}{
		{map[string]string{"access_keys": "1", "hubs": "2", "limits": "3"}, nil},
		{map[string]string{"access_keys": "x", "hubs": "2", "limits": "y"}, []string{"access_keys", "limits"}},
		{map[string]string{"access_keys": "1", "hubs": "2"}, []string{"limits"}},                         // a part they lack
		{map[string]string{"access_keys": "1", "hubs": "2", "limits": "3", "new": "4"}, []string{"new"}}, // one we lack
		{nil, []string{"access_keys", "hubs", "limits"}},
	} {
		if got := differingParts(mine, tc.theirs); !slices.Equal(got, tc.want) {
			t.Errorf("differingParts(%v) = %v, want %v", tc.theirs, got, tc.want)
		}
	}
}

// A node whose configuration differs from a peer's says so: an error log
// naming the parts, the parts in /admin/cluster's state, and the gauge;
// once the peer restarts with the same configuration, all three clear.
func TestConfigMismatchIsReported(t *testing.T) {
	ns := natstest.Start(t, 0)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	mine := map[string]string{"access_keys": "k1", "hubs": "h1"}
	a, err := Connect(context.Background(), Config{URLs: []string{ns.URL()}, NodeID: "a",
		HeartbeatInterval: 50 * time.Millisecond, ConfigDigest: mine, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })

	b, err := Connect(context.Background(), Config{URLs: []string{ns.URL()}, NodeID: "b",
		HeartbeatInterval: 50 * time.Millisecond, ConfigDigest: map[string]string{"access_keys": "k2", "hubs": "h1"}})
	if err != nil {
		t.Fatal(err)
	}
	differs := func() []string {
		for _, n := range a.State(context.Background()).Nodes {
			if n.NodeID == "b" {
				return n.ConfigDiffers
			}
		}
		return []string{"b not seen"}
	}
	eventually.True(t, "a reports b's access keys", 10*time.Second, func() bool {
		return slices.Equal(differs(), []string{"access_keys"})
	})
	if g := gaugeValue(t, reg, "switchboard_cluster_config_mismatched_nodes"); g != 1 {
		t.Errorf("config_mismatched_nodes = %v, want 1", g)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "differs_in=access_keys") ||
		strings.Count(l, "different configuration") != 1 {
		t.Errorf("want one error log naming access_keys, got:\n%s", l)
	}
	b.Close(context.Background())

	b2, err := Connect(context.Background(), Config{URLs: []string{ns.URL()}, NodeID: "b",
		HeartbeatInterval: 50 * time.Millisecond, ConfigDigest: map[string]string{"access_keys": "k1", "hubs": "h1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b2.Close(context.Background()) })
	eventually.True(t, "the restarted b matches", 10*time.Second, func() bool {
		return len(differs()) == 0 && a.mismatchedNodes() == 0
	})
}

// gaugeValue reads a registered gauge without labels.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s not registered", name)
	return 0
}
