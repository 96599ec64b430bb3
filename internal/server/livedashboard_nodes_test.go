package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/dashboard"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// historyHubs writes a hubs file whose chat hub keeps the history of
// room:* groups.
func historyHubs(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "hubs.yaml")
	if err := os.WriteFile(f, []byte("hubs:\n  chat:\n    history:\n      - {pattern: \"room:*\", max_messages: 100, max_age: 1h}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func findNode(o dashboard.Overview, id string) (dashboard.NodeView, bool) {
	i := slices.IndexFunc(o.Nodes, func(n dashboard.NodeView) bool { return n.NodeID == id })
	if i < 0 {
		return dashboard.NodeView{}, false
	}
	return o.Nodes[i], true
}

func findStream(o dashboard.Overview, group string) (history.StreamStat, bool) {
	i := slices.IndexFunc(o.Streams, func(s history.StreamStat) bool { return s.Group == group })
	if i < 0 {
		return history.StreamStat{}, false
	}
	return o.Streams[i], true
}

// TestDashboardSumsTheNodes: logged in on node a of a two-node cluster
// (JetStream history), the overview lists both nodes with their
// connections, sums the hub and its group over them, shows the delivery
// latency each node measured of the console's sends (on b from their
// arrival over NATS or from JetStream), and lists the history group with
// its last offset.
func TestDashboardSumsTheNodes(t *testing.T) {
	ns := natstest.StartJetStream(t)
	hubs := historyHubs(t)
	var n []*servertest.Server
	for _, id := range []string{"a", "b"} {
		n = append(n, servertest.Start(t, servertest.Options{ConfigFile: hubs, Settings: []string{
			"cluster.nats_url=" + ns.URL(), "server.node_id=" + id, "auth.access_keys=" + clusterKey}}))
	}
	d := dashLogin(t, n[0], clusterKey)
	ann := dialWPS(t, n[0], "ann", "room:1")
	bea := dialWPS(t, n[1], "bea", "room:1")
	var o dashboard.Overview
	eventually.True(t, "a's overview lists a and b with a connection each", 10*time.Second, func() bool {
		o = dashboard.Overview{}
		d.call("GET", "/dashboard/api/overview", nil, &o)
		a, okA := findNode(o, "a")
		b, okB := findNode(o, "b")
		return okA && okB && a.Local && !b.Local && a.Error == "" && b.Error == "" && a.Connections == 1 && b.Connections == 1
	})
	wps := o.Namespaces[0]
	if wps.Name != "webpubsub" || wps.Connections != 2 || len(wps.Hubs) != 1 || wps.Hubs[0] != (dashboard.HubView{Name: "chat", Connections: 2, Users: 2, Groups: 2}) {
		t.Errorf("hubs summed over a and b: %+v", wps)
	}
	if len(wps.TopGroups) == 0 || wps.TopGroups[0] != (dashboard.TopGroup{Hub: "chat", Group: "room:1", Members: 2}) {
		t.Errorf("top groups summed over a and b: %+v", wps.TopGroups)
	}
	// Two sends to the history group (delivered from JetStream on each
	// node), one to everyone (from the broker over NATS on b).
	for i, text := range []string{"one", "two", "all"} {
		target := map[string]any{"hub": "chat", "target": "group", "name": "room:1", "content_type": "text/plain", "data": text}
		if text == "all" {
			target["target"] = "all"
		}
		if code := d.call("POST", "/dashboard/api/send", target, nil); code != 200 {
			t.Fatalf("send %d: %d", i, code)
		}
		for _, c := range []*wpsClient{ann, bea} {
			if got := c.data(); got != text {
				t.Fatalf("got %q, want %q", got, text)
			}
		}
	}
	eventually.Nil(t, 10*time.Second, func() error {
		o = dashboard.Overview{}
		d.call("GET", "/dashboard/api/overview", nil, &o)
		a, _ := findNode(o, "a")
		b, _ := findNode(o, "b")
		s, ok := findStream(o, "room:1")
		if a.Latency.Count >= 3 && b.Latency.Count >= 3 && o.Latency.Count == a.Latency.Count+b.Latency.Count && ok && s.Last == 2 {
			return nil
		}
		return fmt.Errorf("want both nodes' latency to count the 3 sends and room:1 at offset 2: nodes %+v, latency %+v, streams %+v", o.Nodes, o.Latency, o.Streams)
	})
	s, _ := findStream(o, "room:1")
	if s.Namespace != "webpubsub" || s.Hub != "chat" || s.Messages != 2 || s.First != 1 || s.Epoch == "" || s.MaxMessages != 100 || s.MaxAge != "1h0m0s" {
		t.Errorf("stream %+v", s)
	}
	b, _ := findNode(o, "b")
	if b.Counters["messages_out"] < 3 {
		t.Errorf("b's counters %v, want its 3 messages out", b.Counters)
	}
	// A node that leaves is no longer listed once its heartbeats stop;
	// until then it is listed with why it has no summary.
	n[1].Stop()
	eventually.True(t, "b is gone or listed without a summary", 15*time.Second, func() bool {
		o = dashboard.Overview{}
		d.call("GET", "/dashboard/api/overview", nil, &o)
		b, ok := findNode(o, "b")
		return !ok || strings.HasPrefix(b.Error, "no answer")
	})
}

// TestDashboardShowsHistoryStreams: on one node with the embedded log, the
// overview lists the history group the console sent to, with its bytes,
// offsets, epoch and retention.
func TestDashboardShowsHistoryStreams(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{ConfigFile: historyHubs(t), Settings: []string{"auth.access_keys=" + clusterKey}})
	d := dashLogin(t, srv, clusterKey)
	for _, text := range []string{"one", "two", "three"} {
		if code := d.call("POST", "/dashboard/api/send", map[string]any{"hub": "chat", "target": "group", "name": "room:9",
			"content_type": "text/plain", "data": text}, nil); code != 200 {
			t.Fatalf("send: %d", code)
		}
	}
	var o dashboard.Overview
	d.call("GET", "/dashboard/api/overview", nil, &o)
	s, ok := findStream(o, "room:9")
	if !ok || s.Namespace != "webpubsub" || s.Hub != "chat" || s.Messages != 3 || s.First != 1 || s.Last != 3 || s.Epoch == "" ||
		s.Bytes < int64(len("onetwothree")) || s.MaxMessages != 100 || s.MaxAge != "1h0m0s" {
		t.Fatalf("streams %+v", o.Streams)
	}
	if len(o.Nodes) != 1 || o.Nodes[0].NodeID != o.NodeID || !o.Nodes[0].Local {
		t.Errorf("nodes %+v, want this node alone", o.Nodes)
	}
}
