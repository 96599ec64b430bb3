package core_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// TestListUsersCountsConnsPerUser: a user with several conns in the group is
// one entry with their count; anonymous conns and other groups' members are
// not listed; pages follow the cursor in user-id order.
func TestListUsersCountsConnsPerUser(t *testing.T) {
	n := testNode(t, core.Config{})
	h := testHub(t, n, "chat")
	for _, u := range []string{"bob", "ann", "ann", "", "carl"} {
		connect(t, h, core.ConnInfo{UserID: u, Groups: []string{"g"}})
	}
	connect(t, h, core.ConnInfo{UserID: "dora", Groups: []string{"other"}})
	connect(t, h, core.ConnInfo{UserID: "ann"}) // in the hub, not the group

	page, more := h.ListUsers("g", "", 2)
	if fmt.Sprint(page) != "[{ann 2} {bob 1}]" || !more {
		t.Fatalf("first page: %v more=%v", page, more)
	}
	page, more = h.ListUsers("g", "bob", 2)
	if fmt.Sprint(page) != "[{carl 1}]" || more {
		t.Fatalf("second page: %v more=%v", page, more)
	}
	page, _ = h.ListUsers("", "", 10)
	if fmt.Sprint(page) != "[{ann 3} {bob 1} {carl 1} {dora 1}]" {
		t.Fatalf("hub: %v", page)
	}
	p := h.Presence()
	if p.Conns != 7 || p.Users != 4 || p.Groups != 2 || len(p.UserHashes) != 4 || len(p.GroupHashes) != 2 {
		t.Fatalf("presence: %+v", p)
	}
}

// TestPresenceMergesNodes: another node's users and counts merge with this
// node's: a user on both counts once with the conns summed, a group on both
// counts once.
func TestPresenceMergesNodes(t *testing.T) {
	fr := &fakeRouter{}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: fr})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"g"}})
	connect(t, h, core.ConnInfo{UserID: "bob", Groups: []string{"g"}})

	other := testHub(t, testNode(t, core.Config{NodeID: "other"}), "chat")
	connect(t, other, core.ConnInfo{UserID: "ann", Groups: []string{"g", "h"}})
	connect(t, other, core.ConnInfo{UserID: "ann", Groups: []string{"g"}})
	connect(t, other, core.ConnInfo{UserID: "carl", Groups: []string{"h"}})

	ctx := context.Background()
	op, more := other.ListUsers("g", "", 1)
	fr.others = []core.Reply{{Users: op, More: more}}
	r, err := h.Do(ctx, core.Request{Kind: core.ReqListUsers, Group: "g", Limit: 1})
	if err != nil || fmt.Sprint(r.Users) != "[{ann 3}]" || !r.More {
		t.Fatalf("merged page: %+v %v", r, err)
	}
	p := other.Presence()
	fr.others = []core.Reply{{Presence: &p}}
	r, err = h.Do(ctx, core.Request{Kind: core.ReqPresence})
	if err != nil || r.Presence == nil {
		t.Fatalf("presence: %+v %v", r, err)
	}
	if got := *r.Presence; got.Conns != 5 || got.Users != 3 || got.Groups != 2 || got.Approximate {
		t.Fatalf("merged presence: %+v", got)
	}
}

// TestPresenceEstimatesBeyondSketch: past core.SketchSize distinct users
// the merged count is an estimate, marked so, within a few percent, and
// counts the users two nodes share once.
func TestPresenceEstimatesBeyondSketch(t *testing.T) {
	fr := &fakeRouter{}
	n, err := core.NewNode(core.Config{NodeID: "me", Broker: fr})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := n.Hub("chat")
	other := testHub(t, testNode(t, core.Config{NodeID: "other"}), "chat")
	// 6,000 users here, 6,000 there, 2,000 of them on both: 10,000.
	for i := range 6000 {
		connect(t, h, core.ConnInfo{UserID: fmt.Sprintf("user-%d", i)})
		connect(t, other, core.ConnInfo{UserID: fmt.Sprintf("user-%d", i+4000)})
	}
	p := other.Presence()
	fr.others = []core.Reply{{Presence: &p}}
	r, err := h.Do(context.Background(), core.Request{Kind: core.ReqPresence})
	if err != nil {
		t.Fatal(err)
	}
	got := *r.Presence
	if !got.Approximate || got.Conns != 12000 || math.Abs(float64(got.Users)-10000) > 500 {
		t.Fatalf("merged presence: conns %d users %d approximate %v, want 12000, 10000±5%%, true", got.Conns, got.Users, got.Approximate)
	}
	if len(got.UserHashes) != core.SketchSize {
		t.Fatalf("%d hashes kept, want %d", len(got.UserHashes), core.SketchSize)
	}
}

// TestPresenceGauges: the per-hub gauges follow distinct users and groups,
// by namespace, and go back to zero when they leave.
func TestPresenceGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := testNode(t, core.Config{Registerer: reg, Namespace: "signalr"})
	h := testHub(t, n, "chat")
	a := connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"g", "h"}})
	b := connect(t, h, core.ConnInfo{UserID: "ann", Groups: []string{"g"}})
	c := connect(t, h, core.ConnInfo{UserID: "bob"})
	users := func() float64 {
		return metrictest.Value(t, reg, "switchboard_presence_users", "hub", "chat", "namespace", "signalr")
	}
	groups := func() float64 {
		return metrictest.Value(t, reg, "switchboard_presence_groups", "hub", "chat", "namespace", "signalr")
	}
	if users() != 2 || groups() != 2 {
		t.Fatalf("users %v groups %v, want 2 and 2", users(), groups())
	}
	a.Close("bye")
	if users() != 2 || groups() != 1 {
		t.Fatalf("after one of ann's conns: users %v groups %v, want 2 and 1", users(), groups())
	}
	b.Close("bye")
	c.Close("bye")
	if users() != 0 || groups() != 0 {
		t.Fatalf("after all: users %v groups %v", users(), groups())
	}
}

// TestListUsersPagesABigHub: paging through a hub of many users gives
// each once, in order, and a page holds only what it returns (the heap is
// bounded by the page, not the hub).
func TestListUsersPagesABigHub(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "chat")
	const users = 2500
	for i := range users {
		connect(t, h, core.ConnInfo{UserID: fmt.Sprintf("u%05d", (i*7919)%users)})
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, more := h.ListUsers("", after, 97)
		for _, u := range page {
			got = append(got, u.UserID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].UserID
		if pages > users {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != users || !slices.IsSorted(got) || got[0] != "u00000" || got[users-1] != fmt.Sprintf("u%05d", users-1) {
		t.Fatalf("%d users, sorted %v, first %q", len(got), slices.IsSorted(got), got[0])
	}
	allocs := testing.AllocsPerRun(5, func() { h.ListUsers("", "u01000", 10) })
	if allocs > 5 {
		t.Errorf("a page of 10 of %d users took %v allocations", users, allocs)
	}
}
