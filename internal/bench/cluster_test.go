package bench

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestFanoutOverClusterNodes: with --node, the fanout's subscribers and
// publishers spread over every node of a cluster, and every message reaches
// every subscriber once, whichever node it was sent through.
func TestFanoutOverClusterNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	var nodes []*servertest.Server
	for _, id := range []string{"a", "b", "c"} {
		nodes = append(nodes, servertest.Start(t, servertest.Options{Settings: []string{
			"cluster.nats_url=" + ns.URL(), "server.node_id=" + id, "auth.access_keys=bench-cluster-key-0123456789"}}))
	}
	o := Options{ConnString: nodes[0].ConnectionString(), Workers: 0, SourceIPs: -1, Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second,
		Scenario: "fanout", Subscribers: 30, Publishers: 3, Messages: 100}
	for _, n := range nodes[1:] {
		o.Nodes = append(o.Nodes, strings.TrimRight(n.Endpoint(), "/"))
	}
	rep := runOK(t, o)
	r := rep.Runs[0]
	if r.Counted != 3*100*30 || r.Received != r.Sent*30 {
		t.Errorf("counted %d of %d, received %d for %d sent", r.Counted, 3*100*30, r.Received, r.Sent)
	}
	for i, n := range nodes {
		// Each node published its publisher's sends, and received them back
		// from NATS only if it holds subscribers (interest routing).
		for _, m := range []string{"switchboard_cluster_messages_sent_total", "switchboard_cluster_messages_received_total"} {
			if got := metric(t, n, m); got == 0 {
				t.Errorf("node %d: %s is 0: publishers or subscribers are not spread over the nodes", i, m)
			}
		}
	}
}

// metric returns the sum of the samples of the metric called name on srv's /metrics.
func metric(t *testing.T, srv *servertest.Server, name string) float64 {
	t.Helper()
	resp, err := http.Get(strings.TrimRight(srv.Endpoint(), "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}
