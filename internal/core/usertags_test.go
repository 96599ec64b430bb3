package core_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

func TestUserTags(t *testing.T) {
	t.Parallel()
	type step func(t *testing.T, h *core.Hub)
	tag := func(user, group string, ttl time.Duration, persist bool) step {
		return func(t *testing.T, h *core.Hub) {
			t.Helper()
			if err := h.TagUserGroup(user, group, ttl, persist); err != nil {
				t.Fatalf("TagUserGroup(%q, %q, %v, %v): %v", user, group, ttl, persist, err)
			}
		}
	}
	untag := func(user, group string) step {
		return func(_ *testing.T, h *core.Hub) { h.UntagUserGroup(user, group) }
	}
	tests := []struct {
		name string
		// before runs with one conn of u1 (in group "own") connected; after
		// runs once a second conn of u1 has connected.
		before []step
		// wantOld and wantNew are the groups of the first and second conn.
		wantOld, wantNew []string
		wantIn           map[string]bool // UserInGroup("u1", group)
	}{
		{
			name:    "untimed tag: current and future conns join",
			before:  []step{tag("u1", "g", 0, true)},
			wantOld: []string{"g", "own"}, wantNew: []string{"g"},
			wantIn: map[string]bool{"g": true, "own": true, "x": false},
		},
		{
			name:    "timed tag not yet expired: future conn joins",
			before:  []step{tag("u1", "g", time.Hour, true)},
			wantOld: []string{"g", "own"}, wantNew: []string{"g"},
			wantIn: map[string]bool{"g": true},
		},
		{
			name:    "ttl=0 (no persist): only current conns",
			before:  []step{tag("u1", "g", 0, false)},
			wantOld: []string{"g", "own"}, wantNew: nil,
			wantIn: map[string]bool{"g": true},
		},
		{
			name:    "ttl=0 after a tag drops the tag",
			before:  []step{tag("u1", "g", time.Hour, true), tag("u1", "g", 0, false)},
			wantOld: []string{"g", "own"}, wantNew: nil,
		},
		{
			name:    "untag one group: tag and membership gone",
			before:  []step{tag("u1", "g", 0, true), tag("u1", "h", 0, true), untag("u1", "g")},
			wantOld: []string{"h", "own"}, wantNew: []string{"h"},
			wantIn: map[string]bool{"g": false, "h": true},
		},
		{
			name:    "untag all: every tag and every membership gone",
			before:  []step{tag("u1", "g", 0, true), tag("u1", "h", time.Hour, true), untag("u1", "")},
			wantOld: nil, wantNew: nil,
			wantIn: map[string]bool{"g": false, "h": false, "own": false},
		},
		{
			name:    "tags of another user do not apply",
			before:  []step{tag("u2", "g", 0, true)},
			wantOld: []string{"own"}, wantNew: nil,
			wantIn: map[string]bool{"g": false},
		},
		{
			name:    "untag of an untagged group is harmless",
			before:  []step{untag("u1", "nope")},
			wantOld: []string{"own"}, wantNew: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := testHub(t, testNode(t, core.Config{}), "hub")
			old := connect(t, h, core.ConnInfo{UserID: "u1", Groups: []string{"own"}})
			for _, s := range tt.before {
				s(t, h)
			}
			young := connect(t, h, core.ConnInfo{UserID: "u1"})
			if got := sorted(old.Groups()); !slices.Equal(got, tt.wantOld) {
				t.Errorf("first conn's groups = %q, want %q", got, tt.wantOld)
			}
			if got := sorted(young.Groups()); !slices.Equal(got, tt.wantNew) {
				t.Errorf("new conn's groups = %q, want %q", got, tt.wantNew)
			}
			for g, want := range tt.wantIn {
				if got := h.UserInGroup("u1", g); got != want {
					t.Errorf("UserInGroup(u1, %q) = %v, want %v", g, got, want)
				}
			}
		})
	}
}

func sorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	slices.Sort(s)
	return s
}

func TestUserTagExpires(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testUserTagExpires)
}

func testUserTagExpires(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "hub")
	const ttl = time.Second // on the bubble's clock; the hub, idle, lives 10 s
	if err := h.TagUserGroup("u1", "g", ttl, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl - time.Millisecond)
	synctest.Wait()
	if !h.UserInGroup("u1", "g") {
		t.Fatal("UserInGroup false before the tag's ttl passed")
	}
	time.Sleep(2 * time.Millisecond)
	synctest.Wait()
	if h.UserInGroup("u1", "g") {
		t.Error("UserInGroup true after the tag expired")
	}
	c := connect(t, h, core.ConnInfo{UserID: "u1"})
	if c.InGroup("g") {
		t.Error("a conn connecting after the tag expired joined its group")
	}
	if got := h.UserTags("u1"); len(got) != 0 {
		t.Errorf("UserTags = %q after expiry, want none", got)
	}
}

func TestUserTagWithoutConnsIsKept(t *testing.T) {
	t.Parallel()
	h := testHub(t, testNode(t, core.Config{}), "hub")
	if err := h.TagUserGroup("u1", "g", 0, true); err != nil {
		t.Fatalf("tagging a user with no conns: %v", err)
	}
	if !h.UserInGroup("u1", "g") {
		t.Error("UserInGroup false for a tagged user with no conns")
	}
	if h.GroupExists("g") {
		t.Error("a tag alone made the group exist")
	}
	c := connect(t, h, core.ConnInfo{UserID: "u1"})
	if !c.InGroup("g") || !h.GroupExists("g") {
		t.Error("the user's first conn did not join the tagged group")
	}
}

func TestUserTagUntimedCap(t *testing.T) {
	t.Parallel()
	h := testHub(t, testNode(t, core.Config{}), "hub")
	// One timed tag first: the cap counts untimed tags only.
	if err := h.TagUserGroup("u1", "timed", time.Hour, true); err != nil {
		t.Fatal(err)
	}
	for i := range core.MaxUntimedUserTags + 1 {
		if err := h.TagUserGroup("u1", fmt.Sprintf("g%d", i), 0, true); err != nil {
			t.Fatal(err)
		}
	}
	tags := h.UserTags("u1")
	if len(tags) != core.MaxUntimedUserTags+1 {
		t.Errorf("%d tags, want %d untimed + 1 timed", len(tags), core.MaxUntimedUserTags)
	}
	if slices.Contains(tags, "g0") {
		t.Error("the least recently updated untimed tag g0 was kept beyond the cap")
	}
	for _, want := range []string{"timed", "g1", fmt.Sprintf("g%d", core.MaxUntimedUserTags)} {
		if !slices.Contains(tags, want) {
			t.Errorf("tag %q missing", want)
		}
	}

	// Re-adding refreshes: g1 survives the next overflow, g2 does not.
	if err := h.TagUserGroup("u1", "g1", 0, true); err != nil {
		t.Fatal(err)
	}
	if err := h.TagUserGroup("u1", "extra", 0, true); err != nil {
		t.Fatal(err)
	}
	tags = h.UserTags("u1")
	if !slices.Contains(tags, "g1") || slices.Contains(tags, "g2") {
		t.Errorf("after refreshing g1 and one more tag: g1 kept=%v g2 kept=%v, want true false",
			slices.Contains(tags, "g1"), slices.Contains(tags, "g2"))
	}
}

func TestUserTagErrors(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{Limits: core.Limits{MaxGroupsPerConn: 1}})
	h := testHub(t, n, "hub")
	if err := h.TagUserGroup("u1", " ", 0, true); !errors.Is(err, core.ErrInvalidGroup) {
		t.Errorf("blank group: err = %v, want ErrInvalidGroup", err)
	}
	if err := h.TagUserGroup("u1", "g", -time.Second, true); err == nil {
		t.Error("negative ttl accepted")
	}
	connect(t, h, core.ConnInfo{UserID: "u1", Groups: []string{"full"}})
	if err := h.TagUserGroup("u1", "g", 0, true); !errors.Is(err, core.ErrGroupLimit) {
		t.Errorf("conn at its group limit: err = %v, want ErrGroupLimit", err)
	}
	// The tag is kept and a later conn, which has room, joins.
	c := connect(t, h, core.ConnInfo{UserID: "u1"})
	if !c.InGroup("g") {
		t.Error("new conn did not join the tagged group")
	}
}

// TestUserTagRace runs connects against tag and untag of the same user; once
// both are done, the last act being an untag, no conn may be in the group.
func TestUserTagRace(t *testing.T) {
	t.Parallel()
	h := testHub(t, testNode(t, core.Config{}), "hub")
	const rounds = 500
	var wg sync.WaitGroup
	conns := make(chan client, 2*rounds)
	wg.Add(3)
	for range 2 {
		go func() {
			defer wg.Done()
			for range rounds {
				// Not connect: it calls t.Fatal, which only the test's goroutine may.
				l := &recLink{}
				c, err := h.Connect(core.ConnInfo{UserID: "u1", Codec: newCodec(1, "")}, l)
				if err != nil {
					t.Errorf("Connect: %v", err)
					return
				}
				conns <- client{c, l}
			}
		}()
	}
	go func() {
		defer wg.Done()
		for range rounds {
			if err := h.TagUserGroup("u1", "g", 0, true); err != nil {
				t.Error(err)
				return
			}
			h.UntagUserGroup("u1", "g")
		}
	}()
	wg.Wait()
	close(conns)
	// The tagger's last act was an untag: a connect that raced with it must
	// not have joined after the untag's leave.
	for c := range conns {
		if c.InGroup("g") {
			t.Fatalf("conn %s still in the group after the last untag", c.ID())
		}
	}
	if h.UserInGroup("u1", "g") || h.GroupExists("g") {
		t.Error("user or group still present after the last untag")
	}
}

func BenchmarkConnectWithTags(b *testing.B) {
	h := testHub(b, testNode(b, core.Config{}), "hub")
	for i := range 10 {
		if err := h.TagUserGroup("u1", fmt.Sprintf("g%d", i), 0, true); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		c := connect(b, h, core.ConnInfo{UserID: "u1"})
		c.Close("bench")
	}
}
