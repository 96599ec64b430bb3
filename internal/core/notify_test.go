package core_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// notifyConfig notifies the members of groups that start with "room".
func notifyConfig() *core.PresenceNotify {
	return &core.PresenceNotify{
		Match: func(hub, group string) bool { return strings.HasPrefix(group, "room") },
		Message: func(event, group, user string) *core.Message {
			return textMsg(event + " " + group + " " + user)
		},
	}
}

// TestNotifyUserJoinsOnceLeavesOnce: members are told once when a user's
// first connection joins and once when its last leaves, whatever the
// number of tabs and however they go (leave, disconnect); anonymous
// connections are told but not announced; other groups say nothing.
func TestNotifyUserJoinsOnceLeavesOnce(t *testing.T) {
	n := testNode(t, core.Config{PresenceNotify: notifyConfig()})
	h := testHub(t, n, "chat")
	watcher := connect(t, h, core.ConnInfo{Groups: []string{"room1", "lobby"}}) // anonymous
	watcher.bodies()

	a1 := connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"room1"}})
	a2 := connect(t, h, core.ConnInfo{UserID: "ann"})
	if err := h.JoinGroup(a2.Conn, "room1"); err != nil {
		t.Fatal(err)
	}
	connect(t, h, core.ConnInfo{UserID: "bob", Groups: []string{"lobby"}}) // not notified
	if got := watcher.bodies(); !slices.Equal(got, []string{"joined room1 ann"}) {
		t.Fatalf("after ann's two tabs joined: %q", got)
	}
	if got := a1.bodies(); !slices.Equal(got, []string{"joined room1 ann"}) {
		t.Fatalf("ann's first tab: %q", got)
	}
	if err := h.LeaveGroup(a1.Conn, "room1"); err != nil {
		t.Fatal(err)
	}
	if got := watcher.bodies(); len(got) != 0 {
		t.Fatalf("after one of two tabs left: %q", got)
	}
	a2.Close("bye") // the last tab disconnects
	if got := watcher.bodies(); !slices.Equal(got, []string{"left room1 ann"}) {
		t.Fatalf("after the last tab went: %q", got)
	}
	// Rejoining announces again; a conn joined twice counts once.
	if err := h.JoinGroup(a1.Conn, "room1"); err != nil {
		t.Fatal(err)
	}
	h.JoinGroup(a1.Conn, "room1")
	h.LeaveGroup(a1.Conn, "room1")
	if got := watcher.bodies(); !slices.Equal(got, []string{"joined room1 ann", "left room1 ann"}) {
		t.Fatalf("rejoin and leave: %q", got)
	}
}

// TestNotifyOff: without PresenceNotify nobody is told anything.
func TestNotifyOff(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "chat")
	w := connect(t, h, core.ConnInfo{Groups: []string{"room1"}})
	w.bodies()
	connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"room1"}}).Close("bye")
	if got := w.bodies(); len(got) != 0 {
		t.Fatalf("got %q", got)
	}
}

// TestNotifyAcrossNodes: with another node (a fake router), a user already
// there is not announced when it joins here (the seed read it), its leaving
// here is not a leave while the other node has it, and the other node's
// departure makes it leave.
func TestNotifyAcrossNodes(t *testing.T) {
	fr := &fakeRouter{}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: fr, PresenceNotify: notifyConfig()})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	fr.others = []core.Reply{{Node: "other", Users: []core.UserPresence{{UserID: "ann", Conns: 1}}}}
	w := connect(t, h, core.ConnInfo{Groups: []string{"room1"}})
	if got := w.bodies(); len(got) != 0 {
		t.Fatalf("the seed announced %q", got)
	}
	a := connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"room1"}})
	if got := w.bodies(); len(got) != 0 {
		t.Fatalf("ann, present on the other node, was announced: %q", got)
	}
	// A change from the other node: bob joined there.
	n.Deliver(&core.Op{Hub: "chat", Kind: core.OpPresence, Target: core.Target{Kind: core.ToGroup, Name: "room1"}, User: "bob", Present: true, Origin: "other"})
	if got := w.bodies(); !slices.Equal(got, []string{"joined room1 bob"}) {
		t.Fatalf("bob joined there: %q", got)
	}
	a.Close("bye")
	if got := w.bodies(); len(got) != 0 {
		t.Fatalf("ann left here but is there: %q", got)
	}
	n.NodeGone("other")
	got := w.bodies()
	slices.Sort(got)
	if !slices.Equal(got, []string{"left room1 ann", "left room1 bob"}) {
		t.Fatalf("the other node went: %q", got)
	}
}

// gateRouter is a fakeRouter whose first publish of a cleared group state
// entry, once armed, waits until the test opens the gate: it holds a leave
// between the conn's removal from the group and the rest of its
// bookkeeping.
type gateRouter struct {
	fakeRouter
	armed   atomic.Bool
	reached chan struct{}
	gate    chan struct{}
}

func (g *gateRouter) Publish(ctx context.Context, op *core.Op) error {
	if op.Kind == core.OpGroupState && op.Message.Data == nil && g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.gate
	}
	return g.fakeRouter.Publish(ctx, op)
}

// TestNotifyRejoinWhileLastLeaves: a user's conn joins a group while its
// other conn, the node's last member of the group, is leaving it: the
// node must still count the user as present here, so that the user's
// arrival on another node is no news to this node's members. (Before
// every join published, the join landed between the leaver's removal,
// which restarted the group's tracking, and its count's decrement: by the
// count it was not the user's first here and said nothing, and the
// restarted tracking never learnt the user was here.)
func TestNotifyRejoinWhileLastLeaves(t *testing.T) {
	gr := &gateRouter{reached: make(chan struct{}), gate: make(chan struct{})}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: gr, PresenceNotify: notifyConfig()})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	x := connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"room"}})
	y := connect(t, h, core.ConnInfo{UserID: "ann"})
	if err := h.SetGroupState(context.Background(), x.Conn, "room", []byte("s")); err != nil {
		t.Fatal(err)
	}
	gr.armed.Store(true)
	done := make(chan struct{})
	go func() { h.LeaveGroup(x.Conn, "room"); close(done) }()
	<-gr.reached // x is out of the group (its tracking restarts); its count is not down yet
	if err := h.JoinGroup(y.Conn, "room"); err != nil {
		t.Fatal(err)
	}
	close(gr.gate)
	<-done
	y.bodies()
	// ann arrives on another node: she is here already, nobody is told.
	n.Deliver(&core.Op{Hub: "chat", Kind: core.OpPresence, Target: core.Target{Kind: core.ToGroup, Name: "room"}, User: "ann", Present: true, Origin: "other"})
	if got := y.bodies(); len(got) != 0 {
		t.Fatalf("ann, present here, announced as %q", got)
	}
}
