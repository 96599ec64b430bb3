package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

// startRoutedPair runs two NATS servers routed to each other (a NATS
// cluster, default route pool) and returns their client URLs.
func startRoutedPair(t *testing.T) (string, string) {
	t.Helper()
	start := func(routes string) *natsserver.Server {
		opts := &natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true,
			Cluster: natsserver.ClusterOpts{Name: "sb-test", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT}}
		if routes != "" {
			opts.Routes = natsserver.RoutesFromStr(routes)
		}
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			t.Fatal("nats server not ready")
		}
		t.Cleanup(s.Shutdown)
		return s
	}
	s1 := start("")
	s2 := start(fmt.Sprintf("nats://127.0.0.1:%d", s1.ClusterAddr().Port))
	eventually.True(t, "the servers are routed", 10*time.Second, func() bool { return s1.NumRoutes() > 0 && s2.NumRoutes() > 0 })
	return s1.ClientURL(), s2.ClientURL()
}

// TestOrderAcrossNATSServers: nodes on two routed NATS servers keep the
// guarantees of one server: group sends from a (server 1) reach b's member
// (server 2) in order and only while it is a member, as removals through a
// order after them (marker and ops on different subjects, over the route);
// a join answered over NATS is known to server 1 before its answer.
func TestOrderAcrossNATSServers(t *testing.T) {
	u1, u2 := startRoutedPair(t)
	a, b := startMember(t, u1, "a"), startMember(t, u2, "b")
	eventually.True(t, "a sees b", 10*time.Second, func() bool { return len(a.b.c.liveNodes()) == 2 })
	m := b.connect(t)
	var want []string
	for round := range 20 {
		g := fmt.Sprintf("g%d", round%3)
		if r, err := a.hub.Do(context.Background(), core.Request{Kind: core.ReqJoin, Conn: m.c.ID(), Group: g}); err != nil || r.Err != nil {
			t.Fatalf("join: %v %v", err, r.Err)
		}
		for i := range 20 {
			d := fmt.Sprintf("%d-%d", round, i)
			want = append(want, d)
			if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, text(d)); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := a.hub.Do(context.Background(), core.Request{Kind: core.ReqLeave, Conn: m.c.ID(), Group: g}); err != nil || r.Err != nil {
			t.Fatalf("leave: %v %v", err, r.Err)
		}
		if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, text("after-leave")); err != nil {
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
		t.Errorf("the member got %d messages, want %d, in order; from #%d: got %q, want %q",
			len(got), len(want), i, got[min(i, len(got)):min(i+5, len(got))], want[min(i, len(want)):min(i+5, len(want))])
	}
}

// TestLocalJoinAcrossNATSServers: a join answered on the member's own node
// b (NATS server 2), as a client's joinGroup is, is known to server 1 when
// it returns: a send a (server 1) accepts right after reaches the member.
func TestLocalJoinAcrossNATSServers(t *testing.T) {
	u1, u2 := startRoutedPair(t)
	a, b := startMember(t, u1, "a"), startMember(t, u2, "b")
	eventually.True(t, "b sees a", 10*time.Second, func() bool { return len(b.b.c.liveNodes()) == 2 })
	m := b.connect(t)
	const rounds = 300
	for i := range rounds {
		g := fmt.Sprintf("g%d", i)
		if err := b.hub.JoinGroup(m.c, g); err != nil {
			t.Fatal(err)
		}
		if err := a.hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: g}, text(g)); err != nil {
			t.Fatal(err)
		}
	}
	fence(t, a, []*member{a, b}, "a")
	n := 0
	for _, d := range m.received() {
		if !strings.HasPrefix(d, "end-") {
			n++
		}
	}
	if n != rounds {
		t.Errorf("the member got %d of the %d sends accepted after its joins", n, rounds)
	}
	if e := testutil.ToFloat64(b.b.subErrs); e != 0 {
		t.Errorf("errors_total{kind=\"subscribe\"} counted %v", e)
	}
}

// TestJoinsDoNotWaitForADeafNodeAgain: a live node that does not answer
// syncs (here one without the wps namespace, as a node of an older
// version) delays one sync by its bound, not every later join.
func TestJoinsDoNotWaitForADeafNodeAgain(t *testing.T) {
	u1, _ := startRoutedPair(t)
	a := startMember(t, u1, "a")
	join(t, u1, "mute") // heartbeats, no wps broker
	eventually.True(t, "a sees mute", 10*time.Second, func() bool { return len(a.b.c.liveNodes()) == 2 })
	m := a.connect(t)
	for i := range 10 {
		if err := a.hub.JoinGroup(m.c, fmt.Sprintf("g%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if e := testutil.ToFloat64(a.b.subErrs); e != 1 {
		t.Errorf("errors_total{kind=\"subscribe\"} counted %v for 10 joins with a node that never answers, want 1 (one sync waited for it)", e)
	}
}
