package outbox_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

func heldBy(t *testing.T, n *servertest.Server) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for _, s := range adminConnectors(t, n.Endpoint()) {
		for _, p := range s.Held {
			out[p.Partition] = true
		}
	}
	return out
}

func waitReady(t *testing.T, n *servertest.Server) {
	t.Helper()
	waitFor(t, "the node is ready", func() bool {
		resp, err := http.Get(n.Endpoint() + "/api/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestOutboxSharedByTwoClusterNodes: two nodes of a cluster (NATS with JetStream: the
// history groups live there) run one outbox connector on one table. They share its 8
// partitions (each held by one node at a time, 4 and 4), every row reaches its
// conversation's history once and in id order, and when one node stops the other takes
// its partitions and delivers the rows inserted after.
func TestOutboxSharedByTwoClusterNodes(t *testing.T) {
	dsn, db := outboxDB(t, 8)
	ns := natstest.StartJetStream(t)
	cfg := configFile(t, outboxConnector("chat", dsn, `group: "conversation:{key}"`))
	var nodes [2]*servertest.Server
	for i := range nodes {
		nodes[i] = startServer(t, cfg, "cluster.nats_url="+ns.URL(), fmt.Sprintf("server.node_id=n%d", i+1))
		waitReady(t, nodes[i])
	}
	const convs = 16
	next := 0
	send := func(n int) {
		for range n {
			var rows []map[string]any
			for c := range convs {
				rows = append(rows, map[string]any{"partition_key": fmt.Sprintf("c%d", c), "payload": []byte(fmt.Sprintf(`{"seq":%d}`, next))})
			}
			insert(t, db, rows...)
			next++
		}
	}
	waitFor(t, "the two nodes share the 8 partitions, 4 each", func() bool {
		a, b := heldBy(t, nodes[0]), heldBy(t, nodes[1])
		for p := range a {
			if b[p] {
				t.Fatalf("partition %d held by both nodes: %v %v", p, a, b)
			}
		}
		return len(a) == 4 && len(b) == 4
	})
	send(40)
	waitFor(t, "the rows are sent", func() bool { return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0 })
	sentBy := [2]int64{}
	for i, n := range nodes {
		for _, s := range adminConnectors(t, n.Endpoint()) {
			sentBy[i] = s.Records.Sent
		}
	}
	if sentBy[0] == 0 || sentBy[1] == 0 || sentBy[0]+sentBy[1] != 40*convs {
		t.Errorf("rows sent by the nodes: %v, want both sending, %d in all", sentBy, 40*convs)
	}

	if err := nodes[0].Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other node takes every partition", func() bool { return len(heldBy(t, nodes[1])) == 8 })
	send(40)
	waitFor(t, "the rows inserted after are sent", func() bool { return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0 })
	for c := range convs {
		got := seqs(t, history(t, nodes[1].Endpoint(), fmt.Sprintf("conversation:c%d", c)))
		if len(got) != next {
			t.Errorf("conversation c%d: %d messages, want %d", c, len(got), next)
		}
		for i, s := range got {
			if s != i {
				t.Errorf("conversation c%d: message %d is seq %d: not each row once in id order", c, i, s)
				break
			}
		}
	}
}
