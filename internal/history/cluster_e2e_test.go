package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// The tests of durable history on a cluster: several whole nodes on one
// NATS server (or a NATS cluster) with JetStream, the hubs' history in
// JetStream streams.

// startClusterNodes starts one node per id on the NATS servers of urls and
// waits until each one's history is ready (its streams exist).
func startClusterNodes(t testing.TB, urls string, ids ...string) []*servertest.Server {
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
func waitReady(t testing.TB, n *servertest.Server) {
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
	// A retry of a send that retention trimmed since (small:* keeps 3):
	// still not sent again, answered 202 without a place in the stream.
	// (It was 503: the first send's message could not be read.)
	if r, _ := restA.send("small:idem", "first", "key-2"); r.status != http.StatusAccepted || r.offset != 1 {
		t.Fatalf("keyed send to small:idem: %+v", r)
	}
	for i := range 3 {
		restA.send("small:idem", fmt.Sprint("later", i), "")
	}
	if r, _ := restB.send("small:idem", "first", "key-2"); r.status != http.StatusAccepted || !r.replayed || r.offset != 0 {
		t.Fatalf("retry of a trimmed send through another node: %+v, want 202 replayed without an offset", r)
	}
	if st, p, err := newREST(nodes[2].Endpoint()).messages("small:idem", 1, 10, ""); err != nil || st != http.StatusOK || p.Offset != 4 {
		t.Errorf("the retry of a trimmed send was stored again: %d %+v %v, want the stream at 4", st, p, err)
	}
}

func offsetOf(f frame) int64 {
	if f.Offset == nil {
		return -1
	}
	return int64(*f.Offset)
}

// TestClusterHistoryJetStreamDown: while the NATS server (and its
// JetStream) is down, a send to a history group answers 503
// Error.History.Unavailable and reaches nobody; once NATS is back the nodes
// serve sends again without a restart, the offsets go on from the last
// stored one, and the members get the stored messages only.
func TestClusterHistoryJetStreamDown(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b")
	const group = "room:down"
	sub := dial(t, nodes[1].Endpoint())
	joinAndWait(t, sub, group, nil, "")
	rest := newREST(nodes[0].Endpoint())
	if r, err := rest.send(group, "before", ""); err != nil || r.status != http.StatusAccepted || r.offset != 1 {
		t.Fatalf("send before: %+v %v", r, err)
	}
	ns.Stop()
	status, code, body, err := rest.sendCode(group, "lost")
	if err != nil || status != http.StatusServiceUnavailable || code != "Error.History.Unavailable" {
		t.Fatalf("send while NATS is down: %d %q %s %v, want 503 Error.History.Unavailable", status, code, body, err)
	}
	t.Logf("answer while NATS is down: %s", body)
	ns.Restart()
	for _, n := range nodes {
		waitReady(t, n)
	}
	var after sendResult
	deadline := time.Now().Add(30 * time.Second)
	for { // the readiness probe may answer before the node's JetStream calls work again
		after, err = rest.send(group, "after", "")
		if err == nil && after.status == http.StatusAccepted || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after.status != http.StatusAccepted || after.offset != 2 {
		t.Fatalf("send after NATS came back: %+v %v, want 202 at offset 2", after, err)
	}
	for _, want := range []string{"before", "after"} {
		if f := sub.next(t); f.Type != "message" || textOf(f.Data) != want {
			t.Fatalf("member got %+v (%s), want %q", f, textOf(f.Data), want)
		}
	}
	if h := newREST(nodes[1].Endpoint()).all(t, group); len(h.Messages) != 2 || h.Messages[1].Data != "after" {
		t.Errorf("history: %+v", h.Messages)
	}
}

// sendCode sends text to group and returns the answer's status,
// x-ms-error-code and body.
func (c *restClient) sendCode(group, text string) (int, string, string, error) {
	u := c.endpoint + "/api/hubs/chat/groups/" + group + "/:send"
	tok, _ := c.keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(text))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("x-ms-error-code"), string(b), nil
}

// TestClusterHistoryR3SurvivesANATSServer: three nodes on a three-server
// NATS cluster, streams replicated on all three (cluster.history_replicas
// 3). Publishers send through every node while one NATS server is stopped
// mid-run: sends may fail meanwhile (503), but every send answered 202 is
// in the history afterwards, at the offset its answer gave, and the stream
// has no gap.
func TestClusterHistoryR3SurvivesANATSServer(t *testing.T) {
	servers := natstest.StartCluster(t, 3)
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	nodes := make([]*servertest.Server, 3)
	for i, id := range []string{"a", "b", "c"} {
		nodes[i] = startServer(t, t.TempDir(), "cluster.nats_url="+strings.Join(urls, ","), "server.node_id="+id,
			"cluster.history_replicas=3", "cluster.request_timeout=3s")
	}
	for _, n := range nodes {
		waitReady(t, n)
	}
	const group = "room:r3"
	const perPublisher = 60
	var mu sync.Mutex
	sent := map[uint64]string{}
	failed := 0
	var accepted sync.WaitGroup
	var progress sync.WaitGroup
	progress.Add(1)
	var once sync.Once
	for i, n := range nodes {
		rest := newREST(n.Endpoint())
		for p := range 2 {
			accepted.Add(1)
			go func() {
				defer accepted.Done()
				for k := range perPublisher {
					if k == perPublisher/3 && i == 0 && p == 0 {
						once.Do(progress.Done)
					}
					payload := fmt.Sprintf("n%d-p%d-%d", i, p, k)
					r, err := rest.send(group, payload, "")
					mu.Lock()
					switch {
					case err == nil && r.status == http.StatusAccepted:
						if prev, dup := sent[r.offset]; dup || r.offset == 0 {
							t.Errorf("offset %d given to %q and %q", r.offset, prev, payload)
						}
						sent[r.offset] = payload
					case err == nil && r.status == http.StatusServiceUnavailable:
						failed++
					default:
						t.Errorf("send %s: %+v %v", payload, r, err)
					}
					mu.Unlock()
				}
			}()
		}
	}
	progress.Wait()
	if n := streamReplicas(t, servers[0].URL(), "SB_HIST_wps_chat-0"); n != 3 {
		t.Fatalf("the stream has %d replicas, want 3", n)
	}
	servers[1].Stop()
	accepted.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d sends accepted, %d refused with 503 while a NATS server was stopped", len(sent), failed)
	var h catchUp
	for _, n := range []*servertest.Server{nodes[0], nodes[2]} {
		h = newREST(n.Endpoint()).all(t, group)
		if h.Oldest != 1 || uint64(len(h.Messages)) != h.Offset {
			t.Fatalf("history from %s: oldest %d, %d messages up to offset %d: a gap", n.Endpoint(), h.Oldest, len(h.Messages), h.Offset)
		}
		for k, m := range h.Messages {
			if m.Offset != uint64(k+1) {
				t.Fatalf("history message %d has offset %d", k, m.Offset)
			}
			if want, ok := sent[m.Offset]; ok && m.Data != want {
				t.Fatalf("offset %d holds %q, its 202 said %q", m.Offset, m.Data, want)
			}
		}
	}
	for off := range sent {
		if off > h.Offset {
			t.Errorf("offset %d was answered 202 but is not in the history (last %d)", off, h.Offset)
		}
	}
}

// BenchmarkDurableSend measures REST sends of 1 KiB to history groups: 64
// concurrent publishers (each one request in flight) over 1 or 64 groups,
// against a single node (the local segment log) and against nodes whose
// history is in JetStream (one NATS server, R1; three, R3), the publishers
// spread over the nodes. It reports sends/s and the p50 and p99 latency of
// a send (its 202).
//
//	go test -run '^$' -bench DurableSend -benchtime 3000x ./internal/history
func BenchmarkDurableSend(b *testing.B) {
	setups := []struct {
		name  string
		start func(b *testing.B) []*servertest.Server
	}{
		{"local", func(b *testing.B) []*servertest.Server { return []*servertest.Server{startServer(b, b.TempDir())} }},
		{"jetstream_R1_1node", func(b *testing.B) []*servertest.Server {
			return startBenchNodes(b, natstest.StartJetStream(b).URL(), 1, 1)
		}},
		{"jetstream_R1_3nodes", func(b *testing.B) []*servertest.Server {
			return startBenchNodes(b, natstest.StartJetStream(b).URL(), 3, 1)
		}},
		{"jetstream_R3_3nodes", func(b *testing.B) []*servertest.Server {
			var urls []string
			for _, s := range natstest.StartCluster(b, 3) {
				urls = append(urls, s.URL())
			}
			return startBenchNodes(b, strings.Join(urls, ","), 3, 3)
		}},
	}
	for _, s := range setups {
		for _, groups := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/groups=%d", s.name, groups), func(b *testing.B) {
				nodes := s.start(b)
				payload := strings.Repeat("x", 1024)
				const publishers = 64
				lat := make([][]time.Duration, publishers)
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for p := range publishers {
					rest := newREST(nodes[p%len(nodes)].Endpoint())
					group := fmt.Sprintf("room:bench-%d", p%groups)
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							t0 := time.Now()
							r, err := rest.send(group, payload, "")
							if err != nil || r.status != http.StatusAccepted {
								b.Errorf("%+v %v", r, err)
								return
							}
							lat[p] = append(lat[p], time.Since(t0))
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				var all []time.Duration
				for _, l := range lat {
					all = append(all, l...)
				}
				slices.Sort(all)
				if len(all) == 0 {
					return
				}
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "sends/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
			})
		}
	}
}

// startBenchNodes starts n nodes on the NATS servers of urls with the given
// history replicas.
func startBenchNodes(b *testing.B, urls string, n, replicas int) []*servertest.Server {
	nodes := make([]*servertest.Server, n)
	for i := range nodes {
		nodes[i] = startServer(b, b.TempDir(), "cluster.nats_url="+urls, fmt.Sprintf("server.node_id=n%d", i),
			fmt.Sprintf("cluster.history_replicas=%d", replicas), "cluster.request_timeout=5s")
	}
	for _, nd := range nodes {
		waitReady(b, nd)
	}
	return nodes
}

// TestClusterHistoryContendedGroup: many publishers on each of three nodes
// send to one history group at once, so that the nodes keep racing for its
// next offset. Every send must be accepted (none refused for losing the
// race too often), at offsets 1…N. Before the stores of a contended group
// read its last message first, the node that had just stored knew it from
// its ack and went again at once, while the others, which had to read it
// first, lost every race: their sends failed with 503 after 32 tries.
func TestClusterHistoryContendedGroup(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b", "c")
	const group = "room:contended"
	const pubsPerNode, perPublisher = 32, 30
	var mu sync.Mutex
	offsets := map[uint64]bool{}
	refused := 0
	var wg sync.WaitGroup
	for _, n := range nodes {
		rest := newREST(n.Endpoint())
		for range pubsPerNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perPublisher {
					r, err := rest.send(group, "x", "")
					mu.Lock()
					switch {
					case err == nil && r.status == http.StatusAccepted && !offsets[r.offset]:
						offsets[r.offset] = true
					case err == nil && r.status == http.StatusServiceUnavailable:
						refused++
					default:
						t.Errorf("send: %+v %v", r, err)
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	const total = 3 * pubsPerNode * perPublisher
	if refused > 0 || len(offsets) != total {
		t.Fatalf("%d sends accepted, %d refused with 503; want all %d accepted", len(offsets), refused, total)
	}
	for off := uint64(1); off <= total; off++ {
		if !offsets[off] {
			t.Fatalf("offset %d missing", off)
		}
	}
}

// TestClusterHistorySignalR: the SignalR REST API's sends to a history
// group share one stream across nodes too (its own, apart from the Web
// PubSub hub of the same name): offsets continue whichever node takes the
// send, an Idempotency-Key retried through another node is answered as the
// first send, and the catch-up read of any node returns the stream.
func TestClusterHistorySignalR(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b", "c")
	keys := newREST(nodes[0].Endpoint()).keys
	call := func(n *servertest.Server, method, path, body, key string) (*http.Response, string) {
		t.Helper()
		u := n.SignalREndpoint() + "/api/hubs/chat" + path
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(method, u+"?api-version=2022-06-01", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for i, n := range nodes {
		resp, body := call(n, http.MethodPost, "/groups/room:sr/:send", fmt.Sprintf(`{"target":"t","arguments":["m%d"]}`, i), "")
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Switchboard-Offset") != fmt.Sprint(i+1) {
			t.Fatalf("send through node %d: %d offset %q %s", i, resp.StatusCode, resp.Header.Get("X-Switchboard-Offset"), body)
		}
	}
	first, _ := call(nodes[0], http.MethodPost, "/groups/room:sr/:send", `{"target":"t","arguments":["keyed"]}`, "k1")
	again, _ := call(nodes[1], http.MethodPost, "/groups/room:sr/:send", `{"target":"t","arguments":["keyed"]}`, "k1")
	if first.Header.Get("X-Switchboard-Offset") != "4" || again.StatusCode != http.StatusAccepted ||
		again.Header.Get("X-Switchboard-Offset") != "4" || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("keyed send %d %v, retried through another node %d %v", first.StatusCode, first.Header, again.StatusCode, again.Header)
	}
	resp, body := call(nodes[2], http.MethodGet, "/groups/room:sr/messages", "", "")
	var page struct {
		Offset   uint64 `json:"offset"`
		Messages []struct {
			Offset uint64 `json:"offset"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || resp.StatusCode != http.StatusOK || page.Offset != 4 || len(page.Messages) != 4 {
		t.Fatalf("SignalR catch-up through node c: %d %s %v", resp.StatusCode, body, err)
	}
	// The Web PubSub hub chat's group room:sr is another stream: empty.
	if st, p, err := newREST(nodes[2].Endpoint()).messages("room:sr", 0, 10, ""); err != nil || st != http.StatusOK || p.Offset != 0 || len(p.Messages) != 0 {
		t.Fatalf("Web PubSub catch-up of room:sr: %d %+v %v", st, p, err)
	}
}

// streamReplicas returns how many servers hold stream (the leader and its
// replicas), as JetStream reports it.
func streamReplicas(t *testing.T, url, stream string) int {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil {
		return 1
	}
	return 1 + len(info.Cluster.Replicas)
}

// TestClusterHistoryClientSendToGroup: a client's sendToGroup to a history
// group through node a is stored (its ack says so once it is) and reaches
// the members on node b with its offset; noEcho keeps it from the sender.
func TestClusterHistoryClientSendToGroup(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b")
	const group = "room:client"
	sender := dialRoles(t, nodes[0].Endpoint(), "webpubsub.joinLeaveGroup", "webpubsub.sendToGroup")
	joinAndWait(t, sender, group, nil, "")
	member := dial(t, nodes[1].Endpoint())
	joinAndWait(t, member, group, nil, "")
	sender.write(t, map[string]any{"type": "sendToGroup", "group": group, "ackId": 2, "dataType": "text", "data": "echoed"})
	sender.write(t, map[string]any{"type": "sendToGroup", "group": group, "ackId": 3, "dataType": "text", "data": "quiet", "noEcho": true})
	var acks, echoes []string
	for len(acks) < 2 || len(echoes) < 1 {
		f := sender.next(t)
		switch f.Type {
		case "ack":
			if !f.Success {
				t.Fatalf("sendToGroup ack %+v", f)
			}
			acks = append(acks, fmt.Sprint(f.AckID))
		case "message":
			echoes = append(echoes, textOf(f.Data))
		}
	}
	for i, want := range []string{"echoed", "quiet"} {
		f := member.next(t)
		if f.Type != "message" || textOf(f.Data) != want || f.Offset == nil || *f.Offset != uint64(i+1) {
			t.Fatalf("member on node b got %+v (%s), want %q at offset %d", f, textOf(f.Data), want, i+1)
		}
	}
	if strings.Join(echoes, ",") != "echoed" {
		t.Errorf("sender got %v, want its own echoed message only", echoes)
	}
	select {
	case f := <-sender.frames:
		t.Errorf("sender got %+v too (noEcho)", f)
	case <-time.After(200 * time.Millisecond):
	}
}

// BenchmarkCatchUpPage measures a catch-up read of a page of 100 or 1,000
// messages (1 KiB each) through the REST API, from the local log and from
// JetStream (one NATS server): msgs/s and ms per page.
//
//	go test -run '^$' -bench CatchUpPage ./internal/history
func BenchmarkCatchUpPage(b *testing.B) {
	for _, s := range []struct {
		name  string
		start func(b *testing.B) []*servertest.Server
	}{
		{"local", func(b *testing.B) []*servertest.Server { return []*servertest.Server{startServer(b, b.TempDir())} }},
		{"jetstream_R1", func(b *testing.B) []*servertest.Server {
			return startBenchNodes(b, natstest.StartJetStream(b).URL(), 1, 1)
		}},
	} {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/%d", s.name, n), func(b *testing.B) {
				rest := newREST(s.start(b)[0].Endpoint())
				payload := strings.Repeat("x", 1024)
				for range 2000 {
					if r, err := rest.send("room:page", payload, ""); err != nil || r.status != http.StatusAccepted {
						b.Fatalf("%+v %v", r, err)
					}
				}
				b.ResetTimer()
				for i := range b.N {
					after := uint64(i*97) % uint64(2000-n)
					st, p, err := rest.messages("room:page", after, n, "")
					if err != nil || st != http.StatusOK || len(p.Messages) != n {
						b.Fatalf("page after %d: %d %d messages %v", after, st, len(p.Messages), err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
			})
		}
	}
}

// TestClusterHistoryCatchUpAnswers: the catch-up read of a clustered
// history answers as the local log's does: the retained page, 410 for an
// offset older than the retention (small:* keeps 3) or another epoch, 400
// for an offset beyond the stream.
func TestClusterHistoryCatchUpAnswers(t *testing.T) {
	ns := natstest.StartJetStream(t)
	nodes := startClusterNodes(t, ns.URL(), "a", "b")
	for i := range 5 {
		if r, err := newREST(nodes[i%2].Endpoint()).send("small:c", fmt.Sprint("m", i+1), ""); err != nil || r.offset != uint64(i+1) {
			t.Fatalf("send %d: %+v %v", i+1, r, err)
		}
	}
	rest := newREST(nodes[1].Endpoint())
	st, p, err := rest.messages("small:c", 2, 10, "")
	if err != nil || st != http.StatusOK || p.Offset != 5 || p.Oldest != 3 || len(p.Messages) != 3 || p.Messages[0].Data != "m3" || p.Messages[2].Data != "m5" {
		t.Fatalf("after 2: %d %+v %v", st, p, err)
	}
	if st, p, _ := rest.messages("small:c", 3, 1, p.Epoch); st != http.StatusOK || len(p.Messages) != 1 || p.Messages[0].Offset != 4 || p.NextLink == nil {
		t.Errorf("after 3, limit 1: %d %+v", st, p)
	}
	if st, p, _ := rest.messages("small:c", 5, 10, ""); st != http.StatusOK || len(p.Messages) != 0 {
		t.Errorf("after the last: %d %+v", st, p)
	}
	for _, c := range []struct {
		after  uint64
		epoch  string
		status int
		code   string
	}{
		{1, "", http.StatusGone, "Error.History.OffsetGone"},
		{6, "", http.StatusBadRequest, "Error.History.OffsetAhead"},
		{3, "0000000000000001", http.StatusGone, "Error.History.EpochChanged"},
	} {
		if st, p, _ := rest.messages("small:c", c.after, 10, c.epoch); st != c.status || p.Code != c.code || p.Offset != 5 || p.Oldest != 3 {
			t.Errorf("after %d epoch %q: %d %+v, want %d %s with the stream's place", c.after, c.epoch, st, p, c.status, c.code)
		}
	}
	if st, p, _ := rest.messages("lobby", 0, 10, ""); st != http.StatusNotFound {
		t.Errorf("a group without history: %d %+v", st, p)
	}
}
