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

// TestClusterHistoryRecoveringJoinOnAnotherNode: while publishers send to a
// history group through nodes a and b, subscribers join through another
// node with the last offset they got, drop their connection, and come back
// each time through the next node, with their last offset. Each one must
// end with the whole stream from its first offset, without a gap or a
// duplicate, each offset with the payload its publisher was told.
func TestClusterHistoryRecoveringJoinOnAnotherNode(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b", "c")
	const group = "room:recover"
	const perPublisher, subscribers = 150, 4
	const total = 2 * perPublisher
	var mu sync.Mutex
	sent := map[uint64]string{}
	var pubWG sync.WaitGroup
	for p := range 2 {
		rest := newREST(nodes[p].Endpoint())
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for k := range perPublisher {
				payload := fmt.Sprintf("p%d-%d", p, k)
				r, err := rest.send(group, payload, "")
				if err != nil || r.status != http.StatusAccepted || r.offset == 0 {
					t.Errorf("send %s: %+v %v", payload, r, err)
					return
				}
				mu.Lock()
				sent[r.offset] = payload
				mu.Unlock()
				if k%10 == 0 {
					time.Sleep(2 * time.Millisecond) // let the subscribers come and go meanwhile
				}
			}
		}()
	}
	type got struct {
		offsets []uint64
		data    []string
	}
	results := make([]got, subscribers)
	var subWG sync.WaitGroup
	for s := range subscribers {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			res := &results[s]
			var last uint64
			epoch := ""
			for round := 0; last < total; round++ {
				node := nodes[(s+2+round)%len(nodes)] // c first for subscriber 0, then a, b, …
				c, err := tryDial(t, node.Endpoint())
				if err != nil {
					t.Errorf("subscriber %d: %v", s, err)
					return
				}
				from := last
				if err := c.tryWrite(joinReq(group, 1, &from, epoch)); err != nil {
					t.Errorf("subscriber %d: %v", s, err)
					return
				}
				dropAfter := 15 + 10*s + round
				n := 0
				for last < total && (round > 6 || n < dropAfter) {
					f, err := c.tryNext()
					if err != nil {
						t.Errorf("subscriber %d round %d: %v", s, round, err)
						return
					}
					switch f.Type {
					case "ack":
						if !f.Success || f.Recovered == nil || !*f.Recovered {
							t.Errorf("subscriber %d round %d: join from %d not recovered: %+v", s, round, from, f)
							return
						}
						epoch = f.Epoch
					case "message":
						if f.Offset == nil || *f.Offset != last+1 {
							t.Errorf("subscriber %d round %d (node %d, from %d): offset %d after %d", s, round, (s+2+round)%len(nodes), from, offsetOf(f), last)
							return
						}
						last = *f.Offset
						res.offsets = append(res.offsets, last)
						res.data = append(res.data, textOf(f.Data))
						n++
					}
				}
				c.drop()
			}
		}()
	}
	pubWG.Wait()
	subWG.Wait()
	if t.Failed() {
		return
	}
	for s, r := range results {
		if len(r.offsets) != total {
			t.Errorf("subscriber %d got %d messages, want %d", s, len(r.offsets), total)
			continue
		}
		for i, off := range r.offsets {
			if off != uint64(i+1) || r.data[i] != sent[off] {
				t.Fatalf("subscriber %d: message %d is offset %d %q, want %d %q", s, i, off, r.data[i], i+1, sent[uint64(i+1)])
			}
		}
	}
}

// TestClusterHistoryIdempotencyAcrossNodes: a send with an Idempotency-Key
// retried through another node within the window is answered as the first
// one (202, its offset and epoch, Idempotent-Replayed: true) and delivered
// once; the key with another body is refused with 422, as on one node.
func TestClusterHistoryIdempotencyAcrossNodes(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b", "c")
	const group = "room:idem"
	sub := dial(t, nodes[2].Endpoint())
	joinAndWait(t, sub, group, nil, "")
	restA, restB := newREST(nodes[0].Endpoint()), newREST(nodes[1].Endpoint())
	first, err := restA.send(group, "hello", "key-1")
	if err != nil || first.status != http.StatusAccepted || first.offset != 1 || first.replayed {
		t.Fatalf("first send: %+v %v", first, err)
	}
	again, err := restB.send(group, "hello", "key-1")
	if err != nil || again.status != http.StatusAccepted || again.offset != first.offset || again.epoch != first.epoch || !again.replayed {
		t.Fatalf("retry through another node: %+v %v (first %+v)", again, err, first)
	}
	// Answered from node b's own index now, the same way.
	if again2, _ := restB.send(group, "hello", "key-1"); again2 != again {
		t.Fatalf("second retry through node b: %+v, want %+v", again2, again)
	}
	if other, _ := restB.send(group, "different", "key-1"); other.status != http.StatusUnprocessableEntity {
		t.Errorf("the key with another body through another node: %d, want 422", other.status)
	}
	marker, err := restB.send(group, "marker", "")
	if err != nil || marker.offset != 2 {
		t.Fatalf("marker: %+v %v", marker, err)
	}
	if f := sub.next(t); textOf(f.Data) != "hello" || *f.Offset != 1 {
		t.Fatalf("first delivery %+v", f)
	}
	if f := sub.next(t); textOf(f.Data) != "marker" || *f.Offset != 2 {
		t.Fatalf("the retried send was delivered again: got %s at %v", textOf(f.Data), *f.Offset)
	}
	if h := newREST(nodes[2].Endpoint()).all(t, group); len(h.Messages) != 2 {
		t.Errorf("history after retries: %+v", h.Messages)
	}
}

func offsetOf(f frame) int64 {
	if f.Offset == nil {
		return -1
	}
	return int64(*f.Offset)
}
