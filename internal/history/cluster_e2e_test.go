package history_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// The tests of durable history on a cluster: several whole nodes on one
// NATS server (or a NATS cluster) with JetStream, the hubs' history in
// JetStream streams.

// startClusterNodes starts one node per id on the NATS servers of urls and
// waits until each one's history is ready (its streams exist).
func startClusterNodes(t *testing.T, urls string, ids ...string) []*servertest.Server {
	t.Helper()
	nodes := make([]*servertest.Server, len(ids))
	for i, id := range ids {
		nodes[i] = startServer(t, t.TempDir(), "cluster.nats_url="+urls, "server.node_id="+id)
	}
	for _, n := range nodes {
		waitReady(t, n)
	}
	return nodes
}

// waitReady waits until the node's readiness probe answers 200.
func waitReady(t *testing.T, n *servertest.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(n.Endpoint() + "/api/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never became ready", n.Endpoint())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// joinAndWait joins c to group (from offset from when not nil) and returns
// the join's ack; messages that come before the ack are returned too.
func joinAndWait(t *testing.T, c *wsClient, group string, from *uint64, epoch string) (ack frame, early []frame) {
	t.Helper()
	c.write(t, joinReq(group, 1, from, epoch))
	for {
		f := c.next(t)
		switch f.Type {
		case "ack":
			if !f.Success {
				t.Fatalf("join: %+v", f)
			}
			return f, early
		case "message":
			early = append(early, f)
		}
	}
}

// TestClusterHistoryGaplessAcrossNodes: publishers send to one history
// group through each of three nodes at once. The offsets given out are
// 1…N, each once; a member on each node gets every message once, in offset
// order, with the payload its publisher was told; the catch-up API of each
// node returns the whole stream.
func TestClusterHistoryGaplessAcrossNodes(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b", "c")
	const group = "room:gapless"
	subs := make([]*wsClient, len(nodes))
	for i, n := range nodes {
		subs[i] = dial(t, n.Endpoint())
		if ack, _ := joinAndWait(t, subs[i], group, nil, ""); ack.Offset == nil || *ack.Offset != 0 {
			t.Fatalf("join on node %d: %+v", i, ack)
		}
	}
	const perNode, pubsPerNode = 60, 2
	const total uint64 = 3 * perNode * pubsPerNode
	var mu sync.Mutex
	sent := map[uint64]string{}
	var wg sync.WaitGroup
	for i, n := range nodes {
		rest := newREST(n.Endpoint())
		for p := range pubsPerNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range perNode {
					payload := fmt.Sprintf("n%d-p%d-%d", i, p, k)
					r, err := rest.send(group, payload, "")
					if err != nil || r.status != http.StatusAccepted || r.offset == 0 {
						t.Errorf("send %s through node %d: %+v %v", payload, i, r, err)
						return
					}
					mu.Lock()
					if prev, dup := sent[r.offset]; dup {
						t.Errorf("offset %d given to %s and %s", r.offset, prev, payload)
					}
					sent[r.offset] = payload
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for off := uint64(1); off <= total; off++ {
		if _, ok := sent[off]; !ok {
			t.Fatalf("offset %d was never given out (%d sends)", off, total)
		}
	}
	for i, c := range subs {
		for want := uint64(1); want <= total; want++ {
			f := c.next(t)
			if f.Type != "message" || f.Offset == nil || *f.Offset != want || textOf(f.Data) != sent[want] {
				t.Fatalf("member on node %d: got %+v (data %s), want offset %d %q", i, f, textOf(f.Data), want, sent[want])
			}
		}
	}
	for i, c := range subs { // nothing more: each message came once
		select {
		case f := <-c.frames:
			t.Errorf("member on node %d got more: %+v", i, f)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for i, n := range nodes {
		h := newREST(n.Endpoint()).all(t, group)
		if uint64(len(h.Messages)) != total || h.Offset != total || h.Oldest != 1 {
			t.Fatalf("catch-up on node %d: %d messages, offset %d, oldest %d; want %d", i, len(h.Messages), h.Offset, h.Oldest, total)
		}
		for k, m := range h.Messages {
			if m.Offset != uint64(k+1) || m.Data != sent[m.Offset] {
				t.Fatalf("catch-up on node %d, message %d: offset %d %q, want %d %q", i, k, m.Offset, m.Data, k+1, sent[uint64(k+1)])
			}
		}
	}
}
