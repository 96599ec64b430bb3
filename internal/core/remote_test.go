package core_test

import (
	"context"
	"errors"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// fakeRouter is an in-process broker that also routes requests: it records
// them and answers with what the test set.
type fakeRouter struct {
	d        core.Deliverer
	asked    []string // node ids of Ask
	reply    core.Reply
	found    bool
	others   []core.Reply
	err      error
	askedAll int
}

func (f *fakeRouter) Attach(d core.Deliverer) { f.d = d }

func (f *fakeRouter) Publish(_ context.Context, op *core.Op) error {
	f.d.Deliver(op)
	return nil
}

func (f *fakeRouter) Ask(_ context.Context, node string, _ *core.Request) (core.Reply, bool, error) {
	f.asked = append(f.asked, node)
	return f.reply, f.found, f.err
}

func (f *fakeRouter) AskOthers(context.Context, *core.Request) ([]core.Reply, error) {
	f.askedAll++
	return f.others, f.err
}

func (f *fakeRouter) Settle(context.Context) {}

func TestHubDoRoutes(t *testing.T) {
	fr := &fakeRouter{}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: fr})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	c := connect(t, h, core.ConnInfo{UserID: "ann"})
	ctx := context.Background()

	// A conn of this node: run here, nobody asked.
	if r, err := h.Do(ctx, core.Request{Kind: core.ReqJoin, Conn: c.ID(), Group: "g"}); err != nil || r.Err != nil || !c.InGroup("g") {
		t.Fatalf("local join: %+v %v", r, err)
	}
	// Another node's conn: asked there; no such node: not found.
	r, err := h.Do(ctx, core.Request{Kind: core.ReqConnExists, Conn: "other_abc"})
	if err != nil || !errors.Is(r.Err, core.ErrConnNotFound) || len(fr.asked) != 1 || fr.asked[0] != "other" {
		t.Fatalf("remote conn of no node: %+v %v, asked %v", r, err, fr.asked)
	}
	fr.found, fr.reply = true, core.Reply{OK: true}
	if r, err := h.Do(ctx, core.Request{Kind: core.ReqConnExists, Conn: "other_abc"}); err != nil || !r.OK {
		t.Fatalf("remote conn: %+v %v", r, err)
	}
	fr.err = core.ErrBrokerUnavailable
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqConnExists, Conn: "other_abc"}); !errors.Is(err, core.ErrBrokerUnavailable) {
		t.Fatalf("a node that did not answer: %v", err)
	}
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqUserExists, User: "ann"}); !errors.Is(err, core.ErrBrokerUnavailable) {
		t.Fatalf("a user-wide request some node did not answer: %v, want the error, not the local answer", err)
	}
	fr.err = nil

	// User-wide: OK if any node says so; core.ErrUserNotFound only if every
	// node has no conn of the user.
	fr.others = []core.Reply{{OK: true}}
	if r, _ := h.Do(ctx, core.Request{Kind: core.ReqUserExists, User: "bob"}); !r.OK {
		t.Error("bob exists on another node")
	}
	fr.others = []core.Reply{{}}
	if r, _ := h.Do(ctx, core.Request{Kind: core.ReqUserExists, User: "bob"}); r.OK {
		t.Error("bob exists nowhere")
	}
	fr.others = []core.Reply{{Err: core.ErrUserNotFound}}
	if r, _ := h.Do(ctx, core.Request{Kind: core.ReqAddUser, User: "bob", Group: "g"}); !errors.Is(r.Err, core.ErrUserNotFound) {
		t.Errorf("add bob who is nowhere: %v", r.Err)
	}
	fr.others = []core.Reply{{}}
	if r, _ := h.Do(ctx, core.Request{Kind: core.ReqAddUser, User: "bob", Group: "g"}); r.Err != nil {
		t.Errorf("add bob who is on another node: %v", r.Err)
	}
	fr.others = []core.Reply{{Err: core.ErrGroupLimit}}
	if r, _ := h.Do(ctx, core.Request{Kind: core.ReqAddUser, User: "ann", Group: "g2"}); !errors.Is(r.Err, core.ErrGroupLimit) {
		t.Errorf("another node's group limit: %v", r.Err)
	}
	if fr.askedAll != 6 {
		t.Errorf("AskOthers called %d times, want 6", fr.askedAll)
	}
}
