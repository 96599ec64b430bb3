package core_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// fixture is a hub with four conns:
//
//	a: user u1, groups g1        protocol p1
//	b: user u1, groups g1, g2    protocol p2
//	c: user u2, groups g2
//	d: anonymous, no groups
type fixture struct {
	hub        *core.Hub
	a, b, c, d client
	all        map[string]client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	f := &fixture{hub: h}
	f.a = connect(t, h, core.ConnInfo{UserID: "u1", Groups: []string{"g1"}, Protocol: "p1"})
	f.b = connect(t, h, core.ConnInfo{UserID: "u1", Groups: []string{"g1", "g2"}, Protocol: "p2"})
	f.c = connect(t, h, core.ConnInfo{UserID: "u2", Groups: []string{"g2"}})
	f.d = connect(t, h, core.ConnInfo{})
	f.all = map[string]client{"a": f.a, "b": f.b, "c": f.c, "d": f.d}
	return f
}

// received drains every conn and returns the names of those that got body.
func (f *fixture) received(t *testing.T, body string) []string {
	t.Helper()
	var got []string
	for name, c := range f.all {
		bodies := c.bodies()
		switch {
		case len(bodies) == 0:
		case len(bodies) == 1 && bodies[0] == body:
			got = append(got, name)
		default:
			t.Errorf("conn %s got %q, want at most [%q]", name, bodies, body)
		}
	}
	slices.Sort(got)
	return got
}

func mustFilter(t *testing.T, s string) *odata.Filter {
	t.Helper()
	f, err := odata.Parse(s)
	if err != nil {
		t.Fatalf("odata.Parse(%q): %v", s, err)
	}
	return f
}

func TestSendTargets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target func(f *fixture) core.Target
		filter string
		want   []string
	}{
		{
			name:   "all",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToAll} },
			want:   []string{"a", "b", "c", "d"},
		},
		{
			name: "all excluding two",
			target: func(f *fixture) core.Target {
				return core.Target{Kind: core.ToAll, Excluded: []string{f.a.ID(), f.d.ID()}}
			},
			want: []string{"b", "c"},
		},
		{
			name:   "group",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToGroup, Name: "g2"} },
			want:   []string{"b", "c"},
		},
		{
			name: "group excluding one",
			target: func(f *fixture) core.Target {
				return core.Target{Kind: core.ToGroup, Name: "g1", Excluded: []string{f.b.ID()}}
			},
			want: []string{"a"},
		},
		{
			name:   "group names are case-sensitive",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToGroup, Name: "G1"} },
			want:   nil,
		},
		{
			name:   "unknown group",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToGroup, Name: "nope"} },
			want:   nil,
		},
		{
			name:   "user with two conns",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToUser, Name: "u1"} },
			want:   []string{"a", "b"},
		},
		{
			name: "user excluding one conn",
			target: func(f *fixture) core.Target {
				return core.Target{Kind: core.ToUser, Name: "u1", Excluded: []string{f.a.ID()}}
			},
			want: []string{"b"},
		},
		{
			name:   "unknown user",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToUser, Name: "u9"} },
			want:   nil,
		},
		{
			name:   "conn",
			target: func(f *fixture) core.Target { return core.Target{Kind: core.ToConn, Name: f.c.ID()} },
			want:   []string{"c"},
		},
		{
			name: "conn excluded",
			target: func(f *fixture) core.Target {
				return core.Target{Kind: core.ToConn, Name: f.c.ID(), Excluded: []string{f.c.ID()}}
			},
			want: nil,
		},
		{
			name:   "unknown conn",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToConn, Name: "nope"} },
			want:   nil,
		},
		{
			name:   "all with filter on user",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToAll} },
			filter: `userId eq 'u1'`,
			want:   []string{"a", "b"},
		},
		{
			name:   "all with filter on groups",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToAll} },
			filter: `'g2' in groups`,
			want:   []string{"b", "c"},
		},
		{
			name:   "all with filter on null user",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToAll} },
			filter: `userId eq null`,
			want:   []string{"d"},
		},
		{
			name:   "group with filter on protocol",
			target: func(*fixture) core.Target { return core.Target{Kind: core.ToGroup, Name: "g1"} },
			filter: `protocol eq 'p2'`,
			want:   []string{"b"},
		},
		{
			name: "user with filter and exclusion",
			target: func(f *fixture) core.Target {
				return core.Target{Kind: core.ToUser, Name: "u1", Excluded: []string{f.b.ID()}}
			},
			filter: `length(groups) ge 1`,
			want:   []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			target := tt.target(f)
			if tt.filter != "" {
				target.Filter = mustFilter(t, tt.filter)
			}
			if err := f.hub.Send(context.Background(), target, textMsg("hello")); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if got := f.received(t, "hello"); !slices.Equal(got, tt.want) {
				t.Errorf("receivers = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSendEncodesOncePerCodec(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	raw, js := newCodec(1, ""), newCodec(2, "json:")
	var clients []client
	for i := 0; i < 20; i++ {
		codec := raw
		if i%2 == 1 {
			codec = js
		}
		clients = append(clients, connect(t, h, core.ConnInfo{Codec: codec, Groups: []string{"g"}}))
	}
	if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("x")); err != nil {
		t.Fatal(err)
	}
	if got := raw.encodes.Load(); got != 1 {
		t.Errorf("raw codec encoded %d times, want 1", got)
	}
	if got := js.encodes.Load(); got != 1 {
		t.Errorf("json codec encoded %d times, want 1", got)
	}
	for i, c := range clients {
		want := "x"
		if i%2 == 1 {
			want = "json:x"
		}
		if got := c.bodies(); !slices.Equal(got, []string{want}) {
			t.Errorf("conn %d got %q, want [%q]", i, got, want)
		}
	}
}

func TestSendOrderAndWakes(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{Groups: []string{"g"}})
	for i := 0; i < 5; i++ {
		if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg(string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.link.wakes.Load(); got != 1 {
		t.Errorf("5 sends to an undrained queue woke the link %d times, want 1", got)
	}
	if got, want := c.bodies(), []string{"a", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := h.Send(context.Background(), core.Target{Kind: core.ToConn, Name: c.ID()}, textMsg("f")); err != nil {
		t.Fatal(err)
	}
	if got := c.link.wakes.Load(); got != 2 {
		t.Errorf("a send after a drain: %d wakes in all, want 2", got)
	}
}

func TestWelcomeIsFirst(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{
		Groups:  []string{"g"},
		Welcome: func(c *core.Conn) core.Frame { return core.Frame{Data: []byte("welcome " + c.ID())} },
	})
	if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	if got, want := c.bodies(), []string{"welcome " + c.ID(), "m"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPublishNoEcho(t *testing.T) {
	t.Parallel()
	for _, noEcho := range []bool{false, true} {
		f := newFixture(t)
		if err := f.hub.Publish(context.Background(), f.b.Conn, "g1", textMsg("p"), noEcho); err != nil {
			t.Fatal(err)
		}
		want := []string{"a", "b"}
		if noEcho {
			want = []string{"a"}
		}
		if got := f.received(t, "p"); !slices.Equal(got, want) {
			t.Errorf("noEcho=%v: receivers %v, want %v", noEcho, got, want)
		}
	}
}

func TestCloseConns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target func(f *fixture) core.Target
		want   []string // closed
	}{
		{"all", func(*fixture) core.Target { return core.Target{Kind: core.ToAll} }, []string{"a", "b", "c", "d"}},
		{"all excluding", func(f *fixture) core.Target { return core.Target{Kind: core.ToAll, Excluded: []string{f.c.ID()}} }, []string{"a", "b", "d"}},
		{"group", func(*fixture) core.Target { return core.Target{Kind: core.ToGroup, Name: "g1"} }, []string{"a", "b"}},
		{"user", func(*fixture) core.Target { return core.Target{Kind: core.ToUser, Name: "u2"} }, []string{"c"}},
		{"conn", func(f *fixture) core.Target { return core.Target{Kind: core.ToConn, Name: f.d.ID()} }, []string{"d"}},
		{"filter", func(f *fixture) core.Target {
			return core.Target{Kind: core.ToAll, Filter: mustFilter(t, `userId eq 'u1'`)}
		}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if err := f.hub.CloseConns(context.Background(), tt.target(f), "bye"); err != nil {
				t.Fatal(err)
			}
			var closed []string
			for name, c := range f.all {
				calls := c.link.closeCalls()
				if !c.Ended() {
					if len(calls) != 0 {
						t.Errorf("conn %s not ended but its link got %v", name, calls)
					}
					continue
				}
				closed = append(closed, name)
				if want := []closeCall{{core.CloseNormal, "bye"}}; !slices.Equal(calls, want) {
					t.Errorf("conn %s: link closes %v, want %v", name, calls, want)
				}
				// The disconnected notice is queued before the close.
				if got, want := c.bodies(), []string{"disconnected:bye"}; !slices.Equal(got, want) {
					t.Errorf("conn %s: queued %q, want %q", name, got, want)
				}
				if _, err := f.hub.Conn(c.ID()); !errors.Is(err, core.ErrConnNotFound) {
					t.Errorf("conn %s: Hub.Conn after close: %v, want ErrConnNotFound", name, err)
				}
			}
			slices.Sort(closed)
			if !slices.Equal(closed, tt.want) {
				t.Errorf("closed %v, want %v", closed, tt.want)
			}
			if got := f.hub.ConnCount(); got != 4-len(tt.want) {
				t.Errorf("ConnCount = %d, want %d", got, 4-len(tt.want))
			}
		})
	}
}

func TestConnEndCleansIndexes(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	ends := map[string][]string{}
	n := testNode(t, core.Config{OnConnEnd: func(c *core.Conn, reason string) {
		mu.Lock()
		ends[c.ID()] = append(ends[c.ID()], reason)
		mu.Unlock()
	}})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{UserID: "u", Groups: []string{"g1", "g2"}})
	if !h.GroupExists("g1") || !h.UserExists("u") {
		t.Fatal("group or user missing after connect")
	}
	c.Close("done")
	c.Close("again")
	if h.GroupExists("g1") || h.GroupExists("g2") || h.UserExists("u") {
		t.Error("group or user still exists after the only conn closed")
	}
	if got := c.Groups(); len(got) != 0 {
		t.Errorf("Groups after close = %q", got)
	}
	if got := c.link.closeCalls(); len(got) != 1 {
		t.Errorf("link closed %d times, want 1: %v", len(got), got)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := ends[c.ID()]; !slices.Equal(got, []string{"done"}) {
		t.Errorf("OnConnEnd reasons = %q, want [done]", got)
	}
	// Joining after the end is a no-op.
	if err := h.JoinGroup(c.Conn, "g3"); err != nil {
		t.Errorf("JoinGroup on ended conn: %v", err)
	}
	if h.GroupExists("g3") {
		t.Error("an ended conn joined a group")
	}
}

func TestGroupMembership(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	h := f.hub
	if err := h.LeaveGroup(f.b.Conn, "g1"); err != nil {
		t.Fatal(err)
	}
	if err := h.LeaveGroup(f.b.Conn, "never-joined"); err != nil {
		t.Errorf("leaving a group never joined: %v", err)
	}
	if f.b.InGroup("g1") || !f.b.InGroup("g2") {
		t.Errorf("b groups = %q, want [g2]", f.b.Groups())
	}
	send := func(g string) {
		t.Helper()
		if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, textMsg("m")); err != nil {
			t.Fatal(err)
		}
	}
	send("g1")
	if got := f.received(t, "m"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("after leave: receivers %v, want [a]", got)
	}
	// Joining twice is one membership.
	for range 2 {
		if err := h.JoinGroup(f.d.Conn, "g1"); err != nil {
			t.Fatal(err)
		}
	}
	send("g1")
	if got := f.received(t, "m"); !slices.Equal(got, []string{"a", "d"}) {
		t.Errorf("after join: receivers %v, want [a d]", got)
	}
	h.LeaveAllGroups(f.b.Conn)
	if got := f.b.Groups(); len(got) != 0 {
		t.Errorf("after LeaveAllGroups: %q", got)
	}
	// AddUserToGroup adds every conn of the user.
	if err := h.AddUserToGroup("u1", "g3"); err != nil {
		t.Fatal(err)
	}
	send("g3")
	if got := f.received(t, "m"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("after AddUserToGroup: receivers %v, want [a b]", got)
	}
	h.RemoveUserFromGroup("u1", "g3")
	if h.GroupExists("g3") {
		t.Error("g3 exists after RemoveUserFromGroup")
	}
	h.RemoveUserFromGroup("u1", "")
	if len(f.a.Groups()) != 0 || len(f.b.Groups()) != 0 {
		t.Errorf("after RemoveUserFromGroup(all): a %q, b %q", f.a.Groups(), f.b.Groups())
	}
	h.RemoveUserFromGroup("nobody", "g1") // no-op
}

func TestAddUserToGroupUnknownUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	err := f.hub.AddUserToGroup("nobody", "g1")
	if !errors.Is(err, core.ErrUserNotFound) {
		t.Errorf("AddUserToGroup(unknown) = %v, want ErrUserNotFound", err)
	}
	f.c.Close("bye")
	if err := f.hub.AddUserToGroup("u2", "g1"); !errors.Is(err, core.ErrUserNotFound) {
		t.Errorf("AddUserToGroup(user whose conns ended) = %v, want ErrUserNotFound", err)
	}
}

func TestGroupLimit(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{Limits: core.Limits{MaxGroupsPerConn: 2}})
	h := testHub(t, n, "hub")
	if _, err := h.Connect(core.ConnInfo{Codec: newCodec(1, ""), Groups: []string{"a", "b", "c"}}, &recLink{}); !errors.Is(err, core.ErrGroupLimit) {
		t.Errorf("Connect with 3 groups, limit 2: %v, want ErrGroupLimit", err)
	}
	c := connect(t, h, core.ConnInfo{UserID: "u", Groups: []string{"a"}})
	if err := h.JoinGroup(c.Conn, "b"); err != nil {
		t.Fatal(err)
	}
	if err := h.JoinGroup(c.Conn, "b"); err != nil {
		t.Errorf("re-joining a group at the limit: %v", err)
	}
	if err := h.JoinGroup(c.Conn, "c"); !errors.Is(err, core.ErrGroupLimit) {
		t.Errorf("third group: %v, want ErrGroupLimit", err)
	}
	if err := h.AddUserToGroup("u", "c"); !errors.Is(err, core.ErrGroupLimit) {
		t.Errorf("AddUserToGroup over the limit: %v, want ErrGroupLimit", err)
	}
	if h.GroupExists("c") {
		t.Error("group c exists after refused joins")
	}
	if err := h.LeaveGroup(c.Conn, "a"); err != nil {
		t.Fatal(err)
	}
	if err := h.JoinGroup(c.Conn, "c"); err != nil {
		t.Errorf("join after a leave freed a slot: %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	for _, name := range []string{"", "1hub", "_hub", "hub name", "hub/x", strings.Repeat("h", 129)} {
		if _, err := n.Hub(name); !errors.Is(err, core.ErrInvalidHub) {
			t.Errorf("Hub(%q) = %v, want ErrInvalidHub", name, err)
		}
	}
	for _, name := range []string{"h", "Hub_1", "a.b", "a,b", "a`b", "a[b]", strings.Repeat("h", 128)} {
		if _, err := n.Hub(name); err != nil {
			t.Errorf("Hub(%q) = %v, want ok", name, err)
		}
	}
	h1, h2 := testHub(t, n, "Chat"), testHub(t, n, "chat")
	if h1 != h2 || h1.Name() != "chat" {
		t.Errorf("hub names are not case-insensitive: %p %q, %p %q", h1, h1.Name(), h2, h2.Name())
	}

	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{UserID: "u"})
	bad := []string{"", " ", "\t\n", strings.Repeat("g", 1025)}
	for _, g := range bad {
		if err := h.JoinGroup(c.Conn, g); !errors.Is(err, core.ErrInvalidGroup) {
			t.Errorf("JoinGroup(%q) = %v, want ErrInvalidGroup", g, err)
		}
		if err := h.LeaveGroup(c.Conn, g); !errors.Is(err, core.ErrInvalidGroup) {
			t.Errorf("LeaveGroup(%q) = %v, want ErrInvalidGroup", g, err)
		}
		if err := h.AddUserToGroup("u", g); !errors.Is(err, core.ErrInvalidGroup) {
			t.Errorf("AddUserToGroup(%q) = %v, want ErrInvalidGroup", g, err)
		}
		if _, err := h.Connect(core.ConnInfo{Codec: newCodec(1, ""), Groups: []string{"ok", g}}, &recLink{}); !errors.Is(err, core.ErrInvalidGroup) {
			t.Errorf("Connect with group %q = %v, want ErrInvalidGroup", g, err)
		}
	}
	if got := h.ConnCount(); got != 1 {
		t.Errorf("refused Connects left conns behind: ConnCount = %d", got)
	}
	if err := h.JoinGroup(c.Conn, strings.Repeat("g", 1024)); err != nil {
		t.Errorf("1024-char group: %v", err)
	}
}

func TestHubsAreSeparate(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h1, h2 := testHub(t, n, "one"), testHub(t, n, "two")
	c1 := connect(t, h1, core.ConnInfo{UserID: "u", Groups: []string{"g"}})
	c2 := connect(t, h2, core.ConnInfo{UserID: "u", Groups: []string{"g"}})
	if err := h1.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	if err := h1.Send(context.Background(), core.Target{Kind: core.ToUser, Name: "u"}, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	if got := c1.bodies(); len(got) != 2 {
		t.Errorf("hub one conn got %q", got)
	}
	if got := c2.bodies(); len(got) != 0 {
		t.Errorf("hub two conn got %q from hub one", got)
	}
	if _, err := h2.Conn(c1.ID()); !errors.Is(err, core.ErrConnNotFound) {
		t.Errorf("hub two finds hub one's conn: %v", err)
	}
}

func TestSendCanceledContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.hub.Send(ctx, core.Target{Kind: core.ToAll}, textMsg("m")); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with canceled ctx = %v, want context.Canceled", err)
	}
	if got := f.received(t, "m"); len(got) != 0 {
		t.Errorf("canceled send delivered to %v", got)
	}
}

func TestListGroupPaging(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	want := map[string]string{}
	for i := 0; i < 25; i++ {
		user := ""
		if i%3 == 0 {
			user = "u" + string(rune('a'+i))
		}
		c := connect(t, h, core.ConnInfo{UserID: user, Groups: []string{"g"}})
		want[c.ID()] = user
	}
	connect(t, h, core.ConnInfo{Groups: []string{"other"}})

	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, more := h.ListGroup("g", after, 7)
		if len(page) > 7 {
			t.Fatalf("page of %d, limit 7", len(page))
		}
		if more && len(page) != 7 {
			t.Errorf("short page %d with more=true", len(page))
		}
		for _, m := range page {
			if u, ok := want[m.ConnID]; !ok || u != m.UserID {
				t.Errorf("member %+v: want user %q (known %v)", m, u, ok)
			}
			ids = append(ids, m.ConnID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ConnID
	}
	if len(ids) != 25 {
		t.Errorf("listed %d members, want 25", len(ids))
	}
	if !slices.IsSorted(ids) {
		t.Errorf("members not in conn-id order: %q", ids)
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("duplicate members: %q", ids)
	}
	if page, more := h.ListGroup("missing", "", 10); len(page) != 0 || more {
		t.Errorf("missing group: %v, %v", page, more)
	}
	if page, more := h.ListGroup("g", ids[len(ids)-1], 10); len(page) != 0 || more {
		t.Errorf("after the last member: %v, %v", page, more)
	}
}

// TestExpiredMessagesAreDropped checks messageTtlSeconds: a message whose
// expiry passed while it was queued is not written; others are.
func TestExpiredMessagesAreDropped(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{Groups: []string{"g"}})
	send := func(body string, expires time.Time) {
		m := textMsg(body)
		m.Expires = expires
		if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, m); err != nil {
			t.Fatal(err)
		}
	}
	send("past", time.Now().Add(-time.Second))
	send("future", time.Now().Add(time.Minute))
	send("never", time.Time{})
	if got, want := c.bodies(), []string{"future", "never"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
