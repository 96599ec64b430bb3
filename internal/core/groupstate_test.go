package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// stateCodec renders group state changes as "conn:state@at".
type stateCodec struct{ testCodec }

func (*stateCodec) EncodeMessage(m *core.Message) core.Frame {
	if m.Type == core.GroupState {
		return core.Frame{Data: fmt.Appendf(nil, "%s:%s@%d", m.StateConn, m.Data, m.StateAt)}
	}
	return core.Frame{Data: m.Data}
}

// snapshotRouter answers a group state request with its states, after
// delivering the changes in during to the node (as if they had arrived
// while the snapshot was read).
type snapshotRouter struct {
	fakeRouter
	states []core.StateItem
	during []*core.Op
}

func (r *snapshotRouter) AskOthers(_ context.Context, req *core.Request) ([]core.Reply, error) {
	for _, op := range r.during {
		r.d.Deliver(op)
	}
	return []core.Reply{{States: r.states}}, nil
}

// TestGroupStateSnapshotHoldsChanges: changes that arrive while a
// subscription's snapshot is read are queued after it, except those the
// snapshot already has (not newer than its entry of their conn).
func TestGroupStateSnapshotHoldsChanges(t *testing.T) {
	change := func(conn, state string, at int64) *core.Op {
		return &core.Op{Hub: "chat", Kind: core.OpGroupState, Target: core.Target{Kind: core.ToGroup, Name: "room"},
			Message: &core.Message{Type: core.GroupState, Group: "room", Data: []byte(state), StateConn: conn, StateAt: at}}
	}
	r := &snapshotRouter{
		states: []core.StateItem{{ConnID: "other_x", State: []byte("old"), At: 10}, {ConnID: "other_z", State: []byte("z"), At: 15}},
		during: []*core.Op{change("other_x", "older", 5), change("other_x", "newer", 20), change("other_y", "new", 3)},
	}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: r})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	c := connect(t, h, core.ConnInfo{Codec: &stateCodec{}, Groups: []string{"room"}})
	c.bodies()
	items, release, err := h.SubscribeGroupState(context.Background(), c.Conn, "room")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ConnID != "other_x" {
		t.Fatalf("snapshot %+v", items)
	}
	if got := c.bodies(); len(got) != 0 {
		t.Fatalf("queued before the snapshot: %q", got)
	}
	release(c.SendMessage)
	if got := fmt.Sprint(c.bodies()); got != "[other_x:newer@20 other_y:new@3]" {
		t.Fatalf("after the snapshot: %s", got)
	}
	// The snapshot's own change of other_z, still on its way when the
	// snapshot was read, arrives: not queued again.
	n.Deliver(change("other_z", "z", 15))
	if got := c.bodies(); len(got) != 0 {
		t.Fatalf("a change the snapshot had: %q", got)
	}
	// Live now: a change is queued at once.
	n.Deliver(change("other_x", "live", 30))
	if got := fmt.Sprint(c.bodies()); got != "[other_x:live@30]" {
		t.Fatalf("live: %s", got)
	}
	h.UnsubscribeGroupState(c.Conn, "room")
	n.Deliver(change("other_x", "gone", 40))
	if got := c.bodies(); len(got) != 0 {
		t.Fatalf("after unsubscribing: %q", got)
	}
}

// TestGroupStateRules: only members set and subscribe; at most
// core.MaxStateGroups entries per conn; leaving clears the entry for the
// subscribers, with a later time than its last change.
func TestGroupStateRules(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "chat")
	ctx := context.Background()
	var groups []string
	for i := range core.MaxStateGroups + 1 {
		groups = append(groups, fmt.Sprint("g", i))
	}
	c := connect(t, h, core.ConnInfo{Codec: &stateCodec{}, Groups: groups})
	w := connect(t, h, core.ConnInfo{Codec: &stateCodec{}, Groups: []string{"g0"}})
	if err := h.SetGroupState(ctx, c.Conn, "nope", []byte("x")); !errors.Is(err, core.ErrForbidden) {
		t.Fatalf("not a member: %v", err)
	}
	if _, _, err := h.SubscribeGroupState(ctx, c.Conn, "nope"); !errors.Is(err, core.ErrForbidden) {
		t.Fatalf("subscribe, not a member: %v", err)
	}
	if _, release, err := h.SubscribeGroupState(ctx, w.Conn, "g0"); err != nil {
		t.Fatal(err)
	} else {
		release(w.SendMessage)
	}
	for _, g := range groups[:core.MaxStateGroups] {
		if err := h.SetGroupState(ctx, c.Conn, g, []byte("s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.SetGroupState(ctx, c.Conn, groups[core.MaxStateGroups], []byte("s")); !errors.Is(err, core.ErrGroupLimit) {
		t.Fatalf("one group too many: %v", err)
	}
	if got := h.GroupStates("g0"); len(got) != 1 || got[0].ConnID != c.ID() {
		t.Fatalf("g0's states: %+v", got)
	}
	first := w.bodies()
	h.LeaveGroup(c.Conn, "g0")
	left := w.bodies()
	if len(first) != 1 || len(left) != 1 || !strings.HasPrefix(first[0], c.ID()+":s@") || !strings.HasPrefix(left[0], c.ID()+":@") {
		t.Fatalf("set %q then left %q", first, left)
	}
	if got := h.GroupStates("g0"); len(got) != 0 {
		t.Fatalf("g0's states after the leave: %+v", got)
	}
	// The freed slot takes another group.
	if err := h.SetGroupState(ctx, c.Conn, groups[core.MaxStateGroups], []byte("s")); err != nil {
		t.Fatalf("after one entry went: %v", err)
	}
}
