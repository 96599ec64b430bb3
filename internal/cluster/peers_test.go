package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// knows reports whether b has a complete record of every other node of
// nodes and has been connected long enough to skip publishes.
func knows(b *Broker, nodes ...string) bool {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	p := &b.in.peers
	if p.learning > 0 || p.since.IsZero() || time.Since(p.since) < 3*b.c.cfg.HeartbeatInterval {
		return false
	}
	for _, id := range nodes {
		if r := p.nodes[id]; id != b.c.cfg.NodeID && (r == nil || !r.complete) {
			return false
		}
	}
	return true
}

// remoteGroups returns the groups b's record of node holds, sorted.
func remoteGroups(b *Broker, node string) []string {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	var out []string
	if r := b.in.peers.nodes[node]; r != nil {
		for k := range r.groups {
			out = append(out, k.hub+"/"+k.group)
		}
	}
	slices.Sort(out)
	return out
}

func settle(t *testing.T, all ...*member) {
	t.Helper()
	ids := make([]string, len(all))
	for i, m := range all {
		ids[i] = m.id
	}
	for _, m := range all {
		eventually.True(t, fmt.Sprintf("%s to learn the other nodes' groups", m.id), 5*time.Second, func() bool { return knows(m.b, ids...) })
	}
}

// TestGroupSendNotPublishedWhenNoOtherNodeHasMembers: once a node knows
// the other nodes' groups, a send to a group only it has members of is
// delivered here and not published; once another node's member joins, the
// sends accepted after the join reach it; once it left, they stay local
// again.
func TestGroupSendNotPublishedWhenNoOtherNodeHasMembers(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	all := []*member{a, b}
	local := a.connect(t, "room")
	settle(t, all...)

	sent := testutil.ToFloat64(a.b.sent)
	if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "room"}, text("1")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.b.unpublished); got != 1 {
		t.Errorf("unpublished = %v, want 1", got)
	}
	if got := testutil.ToFloat64(a.b.sent); got != sent {
		t.Errorf("a published the send to a group only it has members of (%v ops, %v before)", got, sent)
	}

	remote := b.connect(t, "room") // b's join returns once a knows
	if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "room"}, text("2")); err != nil {
		t.Fatal(err)
	}
	fence(t, a, all, "a")
	if got := remote.received(); !slices.Equal(got, []string{"2", "end-a"}) {
		t.Errorf("b's member got %q, want the send accepted after its join", got)
	}
	if got := local.received(); !slices.Equal(got, []string{"1", "2", "end-a"}) {
		t.Errorf("a's member got %q", got)
	}

	if err := b.hub.LeaveGroup(remote.c, "room"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "a to see b leave the group", 5*time.Second, func() bool { return len(remoteGroups(a.b, "b")) == 0 })
	before := testutil.ToFloat64(a.b.unpublished)
	if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "room"}, text("3")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.b.unpublished); got != before+1 {
		t.Errorf("a published a send after the other node's last member left (unpublished %v, before %v)", got, before)
	}
}

// TestJoinThenSendAlwaysArrivesWithKnownPeers is TestJoinThenSendAlwaysArrives
// once every node knows the others' groups, so that the sender publishes a
// send only when a join told it another node has a member: a send accepted
// after a join that returned, through the member's node or another, reaches
// the member. It fails if a join's delta does not reach the sender before
// the join returns.
func TestJoinThenSendAlwaysArrivesWithKnownPeers(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b, c := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b"), startMember(t, ns.URL(), "c")
	all := []*member{a, b, c}
	m := b.connect(t)
	settle(t, all...)
	joinThenSend(t, a, b, c, m)
	if got := testutil.ToFloat64(a.b.unpublished); got != 0 {
		t.Errorf("a kept %v sends local although b had members", got)
	}
}

// TestPeerRecordHealsAfterAMissedDelta: a delta that skips a seq (one was
// lost), or heartbeats that stay ahead of the record, make the record learn
// again from a dump: it ends with the node's real groups, not the forged
// one, and sends are published meanwhile.
func TestPeerRecordHealsAfterAMissedDelta(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	b.connect(t, "real")
	settle(t, a, b)
	if got := remoteGroups(a.b, "b"); !slices.Equal(got, []string{"chat/real"}) {
		t.Fatalf("a's record of b: %q", got)
	}

	// A delta from b three seqs ahead: two were lost.
	asks := peerAsks(a.b)
	forged := encodeDelta(nil, "b", delta{seq: b.b.interestSeq() + 3, watch: true, k: groupKey{"chat", "forged"}})
	if err := b.b.c.nc.Publish(b.b.syncSubject(), forged); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "a to ask b for its groups after the gap", 5*time.Second, func() bool { return peerAsks(a.b) > asks })
	settle(t, a, b)
	if got := remoteGroups(a.b, "b"); !slices.Equal(got, []string{"chat/real"}) {
		t.Errorf("after the gap a's record of b: %q, want b's real groups", got)
	}

	// Heartbeats ahead of the record (a trailing delta lost): the seq one
	// announced not reached at the next one makes it learn. (A record of
	// its own: b's real heartbeats would interleave.)
	a.b.in.mu.Lock()
	a.b.in.peers.nodes["ghost"] = &peerRecord{instance: "i", complete: true, seq: 5, seen: time.Now()}
	a.b.in.mu.Unlock()
	a.b.peerHeartbeat("ghost", "i", 6, true)
	if !knows(a.b, "ghost") {
		t.Fatal("one heartbeat ahead already made the record learn")
	}
	a.b.peerHeartbeat("ghost", "i", 6, true)
	if knows(a.b, "ghost") {
		t.Fatal("a seq a heartbeat announced, not reached at the next one, did not make the record learn")
	}
	if !a.b.othersWatch("chat", "nowhere") {
		t.Error("a learning record did not make sends publish")
	}
	// The ghost sends no heartbeat: it is forgotten, and a knows every
	// node's groups again.
	settle(t, a, b)
}

// TestReconnectedNodeLearnsPeersAgain: a node that lost NATS treats every
// record as learning (it may have missed deltas) and publishes until the
// dumps answered.
func TestReconnectedNodeLearnsPeersAgain(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	settle(t, a, b)
	a.b.connected(false)
	if !a.b.othersWatch("chat", "x") {
		t.Error("a disconnected node skipped a publish")
	}
	a.b.connected(true)
	if !a.b.othersWatch("chat", "x") {
		t.Error("a node reconnected a moment ago skipped a publish")
	}
	b.connect(t, "x")
	settle(t, a, b)
	if !a.b.othersWatch("chat", "x") {
		t.Error("a skips a group b has members of")
	}
	if a.b.othersWatch("chat", "y") {
		t.Error("a publishes to a group nobody else has")
	}
}

// peerAsks is the number of dump requests b made.
func peerAsks(b *Broker) uint64 {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	return b.in.peers.asks
}

func TestInterestCodecs(t *testing.T) {
	d := delta{seq: 1 << 40, watch: true, k: groupKey{"chat", "room.*.> x"}}
	origin, got, err := decodeDelta(encodeDelta(nil, "node-1", d))
	if err != nil || origin != "node-1" || got != d {
		t.Errorf("delta round trip: %q %+v %v", origin, got, err)
	}
	keys := []groupKey{{"a", "1"}, {"b", ""}}
	seq, gotKeys, big, err := decodeDump(encodeDump(nil, 7, keys, 0))
	if err != nil || seq != 7 || big || !slices.Equal(gotKeys, keys) {
		t.Errorf("dump round trip: %d %v %v %v", seq, gotKeys, big, err)
	}
	seq, gotKeys, big, err = decodeDump(encodeDump(nil, 9, keys, 4))
	if err != nil || seq != 9 || !big || len(gotKeys) != 0 {
		t.Errorf("a dump over max: %d %v %v %v", seq, gotKeys, big, err)
	}
	for _, bad := range [][]byte{nil, {deltaWatch}, {9, 1, 'a', 0, 0, 1}, append(encodeDelta(nil, "a", d), 0)} {
		if _, _, err := decodeDelta(bad); err == nil {
			t.Errorf("decodeDelta(%q) took it", bad)
		}
	}
	if _, _, _, err := decodeDump([]byte{2, 1, 0}); err == nil {
		t.Error("a dump with an unknown flag was taken")
	}
	if _, _, _, err := decodeDump([]byte{0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Error("a dump announcing more groups than its bytes was taken")
	}
}

func FuzzDecodeDelta(f *testing.F) {
	f.Add(encodeDelta(nil, "n1", delta{seq: 3, watch: true, k: groupKey{"h", "g"}}))
	f.Add([]byte{deltaUnwatch})
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, d, err := decodeDelta(b)
		if err != nil {
			return
		}
		// Varints may come longer than needed: compare what they say.
		origin2, d2, err := decodeDelta(encodeDelta(nil, origin, d))
		if err != nil || origin2 != origin || d2 != d {
			t.Errorf("%q: %q %+v re-encoded as %q %+v (%v)", b, origin, d, origin2, d2, err)
		}
	})
}

func FuzzDecodeDump(f *testing.F) {
	f.Add(encodeDump(nil, 3, []groupKey{{"h", "g"}}, 0))
	f.Add([]byte{1, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, keys, big, err := decodeDump(b)
		if err != nil {
			return
		}
		if len(keys) > len(b) {
			t.Errorf("%d keys from %d bytes", len(keys), len(b))
		}
		if !big {
			seq2, keys2, big2, err := decodeDump(encodeDump(nil, seq, keys, 0))
			if err != nil || seq2 != seq || big2 || !slices.Equal(keys2, keys) {
				t.Errorf("%q: seq %d, %d keys re-encoded as seq %d, %d keys (%v)", b, seq, len(keys), seq2, len(keys2), err)
			}
		}
	})
}
