package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// member is a core node of a cluster: its broker, its node, and what the
// broker delivered to it.
type member struct {
	codec textCodec // every conn of the member's
	id    string
	b     *Broker
	n     *core.Node
	hub   *core.Hub
	ops   *recorder
}

// tee records every op, then delivers it to the node.
type tee struct {
	r *recorder
	n *core.Node
}

func (t *tee) Deliver(op *core.Op) {
	t.r.Deliver(op)
	t.n.Deliver(op)
}

func (t *tee) Answer(req *core.Request) core.Reply { return t.n.Answer(req) }

func startMember(t *testing.T, url, id string) *member {
	t.Helper()
	b, err := join(t, url, id).Broker("wps")
	if err != nil {
		t.Fatal(err)
	}
	n, err := core.NewNode(core.Config{NodeID: id, Broker: b, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{id: id, b: b, n: n, ops: &recorder{}}
	b.Attach(&tee{m.ops, n})
	h, release, err := n.AcquireHub("chat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	m.hub = h
	return m
}

// textCodec encodes a message as its data, and counts its encodes of
// messages other than fences ("end-…") and sends to a conn ("to-…").
type textCodec struct{ groupEncodes atomic.Int64 }

func (*textCodec) Key() int { return 1 }
func (c *textCodec) EncodeMessage(m *core.Message) core.Frame {
	if d := string(m.Data); !strings.HasPrefix(d, "end-") && !strings.HasPrefix(d, "to-") {
		c.groupEncodes.Add(1)
	}
	return core.Frame{Data: append([]byte(nil), m.Data...)}
}
func (*textCodec) Sequenced() bool                                  { return false }
func (*textCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (*textCodec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

type nopLink struct{}

func (nopLink) Wake()             {}
func (nopLink) Close(int, string) {}

// client is a conn of a member and what it received so far.
type client struct {
	c   *core.Conn
	mu  sync.Mutex
	got []string
}

func (m *member) connect(t *testing.T, groups ...string) *client {
	t.Helper()
	c, err := m.hub.Connect(core.ConnInfo{Groups: groups, Codec: &m.codec, Dialect: "test"}, nopLink{})
	if err != nil {
		t.Fatal(err)
	}
	return &client{c: c}
}

// received returns the data of every message the conn got so far.
func (c *client) received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range c.c.Drain(nopLink{}, nil) {
		c.got = append(c.got, string(it.Body))
	}
	return append([]string(nil), c.got...)
}

func text(s string) *core.Message { return &core.Message{Type: core.Text, Data: []byte(s)} }

// fence sends "end-<tag>" to all from m and waits until every member
// delivered it: what m published before has been delivered everywhere it
// goes (one origin's ops arrive in order on every node).
func fence(t *testing.T, m *member, all []*member, tag string) {
	t.Helper()
	end := "end-" + tag
	if err := m.hub.Send(context.Background(), core.Target{Kind: core.ToAll}, text(end)); err != nil {
		t.Fatal(err)
	}
	for _, x := range all {
		eventually.True(t, x.id+" gets "+end, 10*time.Second, func() bool {
			for _, op := range x.ops.snapshot() {
				if string(op.Message.Data) == end {
					return true
				}
			}
			return false
		})
	}
}

// groupOps counts the ops to group a member received.
func (m *member) groupOps(group string) int {
	n := 0
	for _, op := range m.ops.snapshot() {
		if op.Target.Kind == core.ToGroup && op.Target.Name == group {
			n++
		}
	}
	return n
}

func subscriptions(m *member) int { return int(testutil.ToFloat64(m.b.subs)) }

// TestGroupSendCrossesNATSOnlyToNodesWithMembers: sends to a group (whose
// name has '.', '*', '>' and spaces) reach only the nodes with members,
// once per node whatever its members, and every member once, in order; a
// send to a conn reaches its node only; a broadcast reaches every node.
func TestGroupSendCrossesNATSOnlyToNodesWithMembers(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b, c := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b"), startMember(t, ns.URL(), "c")
	all := []*member{a, b, c}
	const group = "room.*.> x"
	b1, b2, c1 := b.connect(t, group), b.connect(t, group), c.connect(t, group)
	other := c.connect(t, "other")
	for _, x := range []*member{b, c} {
		if got := subscriptions(x); got != fixedSubs+1+boolInt(x == c) {
			t.Errorf("%s: %d subscriptions, want the fixed ones and one per group with members", x.id, got)
		}
	}
	if got := subscriptions(a); got != fixedSubs {
		t.Errorf("a (no members): %d subscriptions, want %d", got, fixedSubs)
	}

	var want []string
	for i := range 50 {
		from := []*member{a, b, c}[i%3] // from every node, members or not
		d := fmt.Sprintf("%s-%d", from.id, i)
		if err := from.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: group}, text(d)); err != nil {
			t.Fatal(err)
		}
		if from == a {
			want = append(want, d) // only a's: one origin's order is kept
		}
	}
	for _, x := range all {
		fence(t, x, all, x.id)
	}
	for _, tc := range []struct {
		m    *member
		want int
	}{{a, 0}, {b, 50}, {c, 50}} {
		if got := tc.m.groupOps(group); got != tc.want {
			t.Errorf("node %s received %d ops to the group, want %d (members: once per node)", tc.m.id, got, tc.want)
		}
	}
	// Encode once per node: b's two members share one encoding of each send.
	for _, tc := range []struct {
		m    *member
		want int64
	}{{a, 0}, {b, 50}, {c, 50}} {
		if got := tc.m.codec.groupEncodes.Load(); got != tc.want {
			t.Errorf("node %s encoded group messages %d times, want %d", tc.m.id, got, tc.want)
		}
	}
	for name, cl := range map[string]*client{"b1": b1, "b2": b2, "c1": c1} {
		var fromA []string
		n := 0
		for _, d := range cl.received() {
			if strings.HasPrefix(d, "end-") {
				continue
			}
			n++
			if strings.HasPrefix(d, "a-") {
				fromA = append(fromA, d)
			}
		}
		if n != 50 || strings.Join(fromA, ",") != strings.Join(want, ",") {
			t.Errorf("%s got %d group messages, a's in order %v; want 50, %v", name, n, fromA, want)
		}
	}

	// A send to a conn crosses to its node only.
	before := map[*member]float64{}
	for _, x := range all {
		before[x] = testutil.ToFloat64(x.b.recv)
	}
	if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToConn, Name: other.c.ID()}, text("to-other")); err != nil {
		t.Fatal(err)
	}
	fence(t, a, all, "conn")
	for _, x := range all {
		want := 1.0 // the fence
		switch x {
		case a:
			want = 0 // NATS does not echo a's own ops: a delivered them itself
		case c:
			want = 2
		}
		if got := testutil.ToFloat64(x.b.recv) - before[x]; got != want {
			t.Errorf("node %s received %v ops for a send to a conn of c and a broadcast, want %v", x.id, got, want)
		}
	}
	if got := other.received(); !slices.Contains(got, "to-other") {
		t.Errorf("the conn got %v", got)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestJoinThenSendAlwaysArrives: a member that joins on node b, by its own
// call or by a REST-like request through another node, gets every send
// accepted by any node after the join returned, first member of the group
// on b or not.
func TestJoinThenSendAlwaysArrives(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b, c := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b"), startMember(t, ns.URL(), "c")
	joinThenSend(t, a, b, c, b.connect(t))
}

// joinThenSend joins m (a conn of b) to 200 groups, each through b or c in
// turn, and sends to each group through a right after the join returned;
// m must get all 200 sends.
func joinThenSend(t *testing.T, a, b, c *member, m *client) {
	t.Helper()
	const rounds = 200
	for i := range rounds {
		group := fmt.Sprintf("g%d", i)
		if i%2 == 0 {
			if err := b.hub.JoinGroup(m.c, group); err != nil {
				t.Fatal(err)
			}
		} else if r, err := c.hub.Do(context.Background(), core.Request{Kind: core.ReqJoin, Conn: m.c.ID(), Group: group}); err != nil || r.Err != nil {
			t.Fatalf("join through c: %v %v", err, r.Err)
		}
		if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: group}, text(group)); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, []*member{a, b, c}, "a")
	n := 0
	for _, d := range m.received() {
		if !strings.HasPrefix(d, "end-") {
			n++
		}
	}
	if n != rounds {
		t.Errorf("the member got %d of the %d sends accepted after its joins", n, rounds)
	}
}

// TestLeaveUnsubscribes: once the last member of a group on a node leaves
// it (or ends), the node no longer subscribes to the group: later sends do
// not cross NATS to it.
func TestLeaveUnsubscribes(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	all := []*member{a, b}
	x, y := b.connect(t, "g", "h"), b.connect(t, "g")
	if got := subscriptions(b); got != fixedSubs+2 {
		t.Fatalf("%d subscriptions, want %d", got, fixedSubs+2)
	}
	b.hub.LeaveGroup(x.c, "g")
	if got := subscriptions(b); got != fixedSubs+2 {
		t.Fatalf("after one of two members left: %d subscriptions, want %d", got, fixedSubs+2)
	}
	b.hub.LeaveGroup(y.c, "g")
	x.c.Close("bye") // its last group, h, goes with it
	if got := subscriptions(b); got != fixedSubs {
		t.Fatalf("after every member left: %d subscriptions, want %d", got, fixedSubs)
	}
	for _, g := range []string{"g", "h"} {
		if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, text(g)); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, all, "a")
	if got := b.groupOps("g") + b.groupOps("h"); got != 0 {
		t.Errorf("b received %d ops to groups it has no member of", got)
	}
}

// TestPublishDeliversLocallyOnlyWhatIsHere: ops to a group without local
// members or to another node's conn are published and not delivered here; an
// op to one of this node's conns is delivered here and not published (no
// other node can hold it), and is refused like any other while NATS is down;
// a conn id that names no valid node reaches nobody and is not published.
func TestPublishDeliversLocallyOnlyWhatIsHere(t *testing.T) {
	srv := natstest.Start(t, 0)
	a, b := startMember(t, srv.URL(), "a"), startMember(t, srv.URL(), "b")
	b.connect(t, "remote")
	own := a.connect(t)
	sent := testutil.ToFloat64(a.b.sent)
	for _, target := range []core.Target{{Kind: core.ToGroup, Name: "remote"}, {Kind: core.ToConn, Name: "b_x"}} {
		if err := a.b.Publish(context.Background(), &core.Op{Hub: "chat", Kind: core.OpSend, Target: target, Message: text("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(a.b.sent) - sent; got != 2 {
		t.Errorf("published %v of the 2 ops to b's recipients", got)
	}
	if n := len(a.ops.snapshot()); n != 0 {
		t.Errorf("a delivered %d ops meant for b's recipients", n)
	}
	sent = testutil.ToFloat64(a.b.sent)
	for _, id := range []string{own.c.ID(), "*_x"} {
		if err := a.b.Publish(context.Background(), &core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToConn, Name: id}, Message: text("to-" + id)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(a.b.sent) - sent; got != 0 {
		t.Errorf("%v sends to a's own conn or to conn *_x were published", got)
	}
	if ops := a.ops.snapshot(); len(ops) != 1 || ops[0].Target.Name != own.c.ID() {
		t.Errorf("a delivered %v, want its own conn's send only", ops)
	}
	srv.Shutdown()
	eventually.True(t, "a sees NATS down", 10*time.Second, func() bool { return !a.b.c.Connected() })
	err := a.b.Publish(context.Background(), &core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToConn, Name: own.c.ID()}, Message: text("to-late")})
	if !errors.Is(err, core.ErrBrokerUnavailable) || len(a.ops.snapshot()) != 1 {
		t.Errorf("a send to its own conn with NATS down: %v, %d delivered; want ErrBrokerUnavailable, nothing", err, len(a.ops.snapshot())-1)
	}
}

// TestGroupSubject: any group name is one subject token, without wildcards.
func TestGroupSubject(t *testing.T) {
	ns := natstest.Start(t, 0)
	a := startMember(t, ns.URL(), "a")
	for _, g := range []string{"g", "a.b", "*", ">", "a b", "\t", strings.Repeat("é", 512), "~marker"} {
		s := a.b.groupSubject("h.1", g)
		tok := strings.Split(s, ".")
		if len(tok) != 5 || tok[2] != "grp" || tok[3] != "h~1" || strings.ContainsAny(tok[4], "*> \t") || tok[4] == "" {
			t.Errorf("group %q: subject %q", g, s)
		}
	}
	if a.b.groupSubject("h", "a") == a.b.groupSubject("h", "b") {
		t.Error("two groups share a subject")
	}
	if err := a.b.Publish(context.Background(), &core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: strings.Repeat("é", 512)}, Message: text("x")}); err != nil {
		t.Errorf("a send to a group of 1024 bytes: %v", err)
	}
}

// TestGroupSendsThenLeaveKeepOrder: the ops to a group travel on the group's
// subject and the markers on the hub-wide one; a removal from the group
// through node a still runs on b after every send a accepted before it, so
// the member gets all of them, round after round of join, sends, leave
// (each leave drops b's subscription, each join makes it again).
func TestGroupSendsThenLeaveKeepOrder(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	m := b.connect(t)
	var want []string
	for round := range 20 {
		if r, err := a.hub.Do(context.Background(), core.Request{Kind: core.ReqJoin, Conn: m.c.ID(), Group: "g"}); err != nil || r.Err != nil {
			t.Fatalf("join: %v %v", err, r.Err)
		}
		for i := range 30 {
			d := fmt.Sprintf("%d-%d", round, i)
			want = append(want, d)
			if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, text(d)); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := a.hub.Do(context.Background(), core.Request{Kind: core.ReqLeave, Conn: m.c.ID(), Group: "g"}); err != nil || r.Err != nil {
			t.Fatalf("leave: %v %v", err, r.Err)
		}
		if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, text("after-leave")); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, []*member{a, b}, "a")
	var got []string
	for _, d := range m.received() {
		if !strings.HasPrefix(d, "end-") {
			got = append(got, d)
		}
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("the member got %d messages, want the %d sent while it was a member, in order; they differ from #%d on: got %q, want %q",
			len(got), len(want), i, got[min(i, len(got)):min(i+5, len(got))], want[min(i, len(want)):min(i+5, len(want))])
	}
	if n := testutil.ToFloat64(b.b.ordWaits); n != 0 {
		t.Errorf("order_wait counted %v", n)
	}
}

// firstDiff returns the first index where a and b differ, -1 if equal.
func firstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestConnectGroupsThenSendAlwaysArrives: a conn that connects on node b
// into groups b has no members of (its token's groups) gets every send
// accepted by another node after the connect returned.
func TestConnectGroupsThenSendAlwaysArrives(t *testing.T) {
	ns := natstest.Start(t, 0)
	a, b := startMember(t, ns.URL(), "a"), startMember(t, ns.URL(), "b")
	var clients []*client
	for r := range 30 {
		groups := []string{fmt.Sprintf("r%d-x", r), fmt.Sprintf("r%d-y", r), fmt.Sprintf("r%d-z", r)}
		clients = append(clients, b.connect(t, groups...))
		for _, g := range groups {
			if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, text(g)); err != nil {
				t.Fatal(err)
			}
		}
	}
	fence(t, a, []*member{a, b}, "a")
	for r, cl := range clients {
		n := 0
		for _, d := range cl.received() {
			if strings.HasPrefix(d, fmt.Sprintf("r%d-", r)) {
				n++
			}
		}
		if n != 3 {
			t.Errorf("conn %d got %d of the 3 sends to its groups accepted after it connected", r, n)
		}
	}
}
