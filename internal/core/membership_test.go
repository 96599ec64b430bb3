package core_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

// recMembers is a core.Membership that records "joined:<conn>:<group>" and
// "left:<conn>:<group>" in call order, and the hubs it was asked about.
type recMembers struct {
	hubs string // observed hubs, comma-separated; "*" all

	mu     sync.Mutex
	events []string
	asked  []string
}

func (r *recMembers) Observes(hub string) bool {
	r.mu.Lock()
	r.asked = append(r.asked, hub)
	r.mu.Unlock()
	return r.hubs == "*" || slices.Contains(strings.Split(r.hubs, ","), hub)
}

func (r *recMembers) Joined(c *core.Conn, group string) { r.add("joined:" + c.UserID() + ":" + group) }
func (r *recMembers) Left(c *core.Conn, group string)   { r.add("left:" + c.UserID() + ":" + group) }

func (r *recMembers) add(s string) {
	r.mu.Lock()
	r.events = append(r.events, s)
	r.mu.Unlock()
}

// take returns the events recorded since the last take.
func (r *recMembers) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func expectEvents(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: events %q, want %q", step, got, want)
	}
}

// TestMembershipEveryPath walks every way into and out of a group and checks
// that the observer hears each real change once, in order, and nothing for
// changes that change nothing.
func TestMembershipEveryPath(t *testing.T) {
	t.Parallel()
	rec := &recMembers{hubs: "chat"}
	n := testNode(t, core.Config{Membership: rec})
	h := testHub(t, n, "chat")
	ctx := context.Background()

	a := connect(t, h, core.ConnInfo{UserID: "a", Groups: []string{"g1", "g2"},
		OnConnect: func(c *core.Conn) { rec.add("connected:" + c.UserID()) }})
	expectEvents(t, "connect with groups", rec.take(), "connected:a", "joined:a:g1", "joined:a:g2")

	if err := h.JoinGroup(a.Conn, "g3"); err != nil {
		t.Fatal(err)
	}
	if err := h.JoinGroup(a.Conn, "g3"); err != nil { // already a member: nothing
		t.Fatal(err)
	}
	expectEvents(t, "client join, twice", rec.take(), "joined:a:g3")

	h.LeaveGroup(a.Conn, "g3")
	h.LeaveGroup(a.Conn, "g3") // not a member: nothing
	h.LeaveGroup(a.Conn, "nope")
	expectEvents(t, "client leave, twice", rec.take(), "left:a:g3")

	b := connect(t, h, core.ConnInfo{UserID: "b"})
	if err := h.AddUserToGroup("b", "g4"); err != nil {
		t.Fatal(err)
	}
	h.RemoveUserFromGroup("b", "g4")
	expectEvents(t, "REST add/remove user", rec.take(), "joined:b:g4", "left:b:g4")

	// A user–group tag brings the user's future conns in.
	if err := h.TagUserGroup("c", "g5", time.Minute, true); err != nil {
		t.Fatal(err)
	}
	c := connect(t, h, core.ConnInfo{UserID: "c"})
	expectEvents(t, "tagged user's new conn", rec.take(), "joined:c:g5")

	// :addToGroups / :removeFromGroups with a filter, through Do.
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqAddToGroups, Groups: []string{"g6", "g7"},
		Filter: mustFilter(t, "userId eq 'b'")}); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, "addToGroups filter", rec.take(), "joined:b:g6", "joined:b:g7")
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqRemoveFromGroups, Groups: []string{"g6", "g8"},
		Filter: mustFilter(t, "userId eq 'b'")}); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, "removeFromGroups filter", rec.take(), "left:b:g6")

	// Per-conn requests as the REST API makes them.
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqJoin, Conn: c.ID(), Group: "g9"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Do(ctx, core.Request{Kind: core.ReqLeaveAll, Conn: c.ID()}); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	if len(got) != 3 || got[0] != "joined:c:g9" {
		t.Errorf("REST join then leave all: %q", got)
	}
	slices.Sort(got[1:])
	expectEvents(t, "REST leave all", got[1:], "left:c:g5", "left:c:g9")

	// Disconnect: one left per group, before OnConnEnd.
	b.Close("bye")
	got = rec.take()
	slices.Sort(got)
	expectEvents(t, "disconnect", got, "left:b:g7")
	a.Close("bye")
	got = rec.take()
	slices.Sort(got)
	expectEvents(t, "disconnect with two groups", got, "left:a:g1", "left:a:g2")
	c.Close("bye") // in no group
	expectEvents(t, "disconnect without groups", rec.take())
}

// TestMembershipOrderBeforeConnEnd checks that the left events of a
// disconnect come before OnConnEnd (the disconnected event).
func TestMembershipOrderBeforeConnEnd(t *testing.T) {
	t.Parallel()
	rec := &recMembers{hubs: "*"}
	n := testNode(t, core.Config{Membership: rec, OnConnEnd: func(c *core.Conn, _ string) { rec.add("end:" + c.UserID()) }})
	h := testHub(t, n, "h")
	a := connect(t, h, core.ConnInfo{UserID: "a", Groups: []string{"g"}})
	a.Close("bye")
	expectEvents(t, "close", rec.take(), "joined:a:g", "left:a:g", "end:a")
}

// TestMembershipUnobservedHub checks that a hub the observer does not want
// reports nothing, and that the observer is asked once per hub.
func TestMembershipUnobservedHub(t *testing.T) {
	t.Parallel()
	rec := &recMembers{hubs: "other"}
	n := testNode(t, core.Config{Membership: rec})
	h := testHub(t, n, "quiet")
	a := connect(t, h, core.ConnInfo{UserID: "a", Groups: []string{"g"}})
	h.JoinGroup(a.Conn, "g2")
	a.Close("bye")
	expectEvents(t, "unobserved hub", rec.take())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.asked, []string{"quiet"}) {
		t.Errorf("Observes asked for %q, want once for quiet", rec.asked)
	}
}

// TestMembershipReliableRecovery checks that a reliable session that loses
// its socket and resumes within its recovery window reports no left/joined
// pair, and that one whose window expires leaves its groups.
func TestMembershipReliableRecovery(t *testing.T) {
	t.Parallel()
	rec := &recMembers{hubs: "*"}
	n := testNode(t, core.Config{Membership: rec, RecoveryWindow: time.Hour})
	h := testHub(t, n, "h")
	codec := &testCodec{key: 2, sequenced: true}
	a := connect(t, h, core.ConnInfo{UserID: "a", Groups: []string{"g"}, Protocol: "rel", Codec: codec})
	rec.take()
	a.Detach(a.link, "socket gone")
	l2 := &recLink{}
	if _, err := h.Resume(a.ID(), "rel", l2); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	expectEvents(t, "drop and recover", rec.take())
	a.Close("bye")
	expectEvents(t, "end", rec.take(), "left:a:g")
}
