package core_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// The default idle timeout of a hub (core.Config.HubIdleTimeout); the tests
// written against main's API leave it at its default.
const idleTimeout = 10 * time.Second

// seriesOf returns how many series of the registry carry hub="hub".
func seriesOf(t *testing.T, reg *prometheus.Registry, hub string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "hub" && l.GetValue() == hub {
					n++
				}
			}
		}
	}
	return n
}

func hubCount(n *core.Node) int { return len(n.Hubs()) }

// TestHubReclaimedAfterLastConnLeaves: on main a hub and its metric series
// stayed for the life of the process.
func TestHubReclaimedAfterLastConnLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := testNode(t, core.Config{Registerer: reg})
		h := testHub(t, n, "Chat")
		a := connect(t, h, core.ConnInfo{Dialect: "json"})
		b := connect(t, h, core.ConnInfo{Dialect: "json"})
		if err := h.Send(context.Background(), core.Target{Kind: core.ToAll}, &core.Message{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if got := metrictest.Present(t, reg, "switchboard_sends_total", "hub", "chat"); got != 1 {
			t.Fatalf("sends_total{hub=chat} = %v, want 1", got)
		}
		a.Close("bye")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if hubCount(n) != 1 {
			t.Fatalf("hub with a conn left was reclaimed (hubs %v)", n.Hubs())
		}
		b.Close("bye")
		time.Sleep(idleTimeout / 2)
		synctest.Wait()
		if hubCount(n) != 1 {
			t.Fatalf("hub reclaimed before its idle timeout")
		}
		time.Sleep(idleTimeout)
		synctest.Wait()
		if hubCount(n) != 0 {
			t.Fatalf("idle hub not reclaimed: hubs %v", n.Hubs())
		}
		if got := seriesOf(t, reg, "chat"); got != 0 {
			t.Fatalf("%d metric series of the reclaimed hub remain", got)
		}
	})
}

// TestTaggedHubKeptUntilTagsExpire: a user–group tag with a ttl keeps its
// hub (the tag would be lost with it) until it expires; an untimed one until
// it is removed.
func TestTaggedHubKeptUntilTagsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := testNode(t, core.Config{})
		h := testHub(t, n, "tagged")
		if err := h.TagUserGroup("u", "g", time.Minute, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if hubCount(n) != 1 || !h.UserInGroup("u", "g") {
			t.Fatalf("hub with a live tag reclaimed (hubs %v)", n.Hubs())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if hubCount(n) != 0 {
			t.Fatalf("hub not reclaimed once its tag expired: hubs %v", n.Hubs())
		}

		u := testHub(t, n, "untimed")
		if err := u.TagUserGroup("u", "g", 0, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if hubCount(n) != 1 {
			t.Fatalf("hub with an untimed tag reclaimed")
		}
		u.UntagUserGroup("u", "")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if hubCount(n) != 0 {
			t.Fatalf("hub not reclaimed once untagged: hubs %v", n.Hubs())
		}
	})
}

// TestRecoveringSessionKeepsHub: a reliable session in its recovery window
// holds its hub; it can resume after the hub's idle timeout, and the hub is
// reclaimed once the window expires.
func TestRecoveringSessionKeepsHub(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 3 * idleTimeout
		n := testNode(t, core.Config{RecoveryWindow: window})
		h := testHub(t, n, "rel")
		codec := newCodec(1, "")
		codec.sequenced = true
		c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
		c.Detach(c.link, "dropped")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if hubCount(n) != 1 {
			t.Fatalf("hub of a recovering session reclaimed")
		}
		l2 := &recLink{}
		if _, err := h.Resume(c.ID(), "rel", l2); err != nil {
			t.Fatalf("resume after the idle timeout: %v", err)
		}
		c.Detach(l2, "dropped again")
		time.Sleep(window + 2*idleTimeout)
		synctest.Wait()
		if !c.Ended() {
			t.Fatal("session did not end with its recovery window")
		}
		if hubCount(n) != 0 {
			t.Fatalf("hub not reclaimed after the recovery window: hubs %v", n.Hubs())
		}
	})
}

// TestStaleHubIsNotConnectedTo: a hub pointer kept past its reclaim cannot
// take a conn that nobody would reach; AcquireHub makes a new hub.
func TestStaleHubIsNotConnectedTo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := testNode(t, core.Config{})
		stale := testHub(t, n, "s")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if _, err := stale.Connect(core.ConnInfo{Codec: newCodec(1, "")}, &recLink{}); !errors.Is(err, core.ErrHubReclaimed) {
			t.Fatalf("Connect on a reclaimed hub: %v, want ErrHubReclaimed", err)
		}
		h, release, err := n.AcquireHub("s")
		if err != nil {
			t.Fatal(err)
		}
		c := connect(t, h, core.ConnInfo{})
		release()
		// A stale pointer's state-keeping calls go to the live hub.
		if err := stale.TagUserGroup("u", "g", time.Minute, true); err != nil {
			t.Fatal(err)
		}
		if !h.UserInGroup("u", "g") {
			t.Fatal("tag made through a stale hub lost")
		}
		c.Close("bye")
	})
}

func TestLookupsMakeNoHub(t *testing.T) {
	n := testNode(t, core.Config{})
	if h, err := n.LookupHub("ghost"); h != nil || err != nil {
		t.Fatalf("LookupHub = %v, %v", h, err)
	}
	v, err := n.ViewHub("Ghost")
	if err != nil || v.Name() != "ghost" || v.ConnCount() != 0 || v.GroupExists("g") {
		t.Fatalf("ViewHub = %v, %v", v, err)
	}
	if err := v.Send(context.Background(), core.Target{Kind: core.ToAll}, &core.Message{Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	v.UntagUserGroup("u", "")
	if _, err := v.Connect(core.ConnInfo{Codec: newCodec(1, "")}, &recLink{}); !errors.Is(err, core.ErrHubReclaimed) {
		t.Fatalf("Connect on a stand-in: %v", err)
	}
	if n.HubCount() != 0 {
		t.Fatalf("lookups made hubs: %v", n.Hubs())
	}
	// A tag is state: it makes the hub, and no other stand-in sees it.
	if err := v.TagUserGroup("u", "g", time.Minute, true); err != nil {
		t.Fatal(err)
	}
	if h, _ := n.LookupHub("ghost"); h == nil || !h.UserInGroup("u", "g") {
		t.Fatal("tag through a stand-in not kept by the hub")
	}
	if other, _ := n.ViewHub("other"); other.UserInGroup("u", "g") || len(other.UserTags("u")) != 0 {
		t.Fatal("a stand-in sees another hub's tag")
	}
	// A stand-in costs next to nothing (a hub's indexes are ~20 KiB).
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 1000 {
		n.ViewHub(fmt.Sprint("nobody", i))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 1000; per > 1024 {
		t.Fatalf("ViewHub of a missing hub allocates %d bytes", per)
	}
}

func TestMaxHubs(t *testing.T) {
	n := testNode(t, core.Config{MaxHubs: 2})
	for _, name := range []string{"a", "b"} {
		if _, release, err := n.AcquireHub(name); err != nil {
			t.Fatal(err)
		} else {
			defer release()
		}
	}
	if _, _, err := n.AcquireHub("c"); !errors.Is(err, core.ErrHubLimit) {
		t.Fatalf("third hub: %v, want ErrHubLimit", err)
	}
	if _, release, err := n.AcquireHub("A"); err != nil {
		t.Fatalf("existing hub refused at the limit: %v", err)
	} else {
		release()
	}
}

// TestHubSeriesCapped: beyond the cap hubs share the _other label; when a
// labelled hub is reclaimed its name is free for the next hub.
func TestHubSeriesCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		series := core.NewHubSeries(2)
		n := testNode(t, core.Config{Registerer: reg, HubSeries: series})
		var conns []client
		for i := range 4 {
			h := testHub(t, n, fmt.Sprintf("h%d", i))
			conns = append(conns, connect(t, h, core.ConnInfo{Dialect: "json"}))
		}
		if got := metrictest.Present(t, reg, "switchboard_connections", "hub", core.OtherHubs); got != 2 {
			t.Fatalf("connections{hub=_other} = %v, want 2", got)
		}
		for i, want := range []float64{1, 1, 0, 0} {
			if got := metrictest.Value(t, reg, "switchboard_connections", "hub", fmt.Sprintf("h%d", i)); got != want {
				t.Errorf("connections{hub=h%d} = %v, want %v", i, got, want)
			}
		}
		conns[0].Close("bye")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if got := seriesOf(t, reg, "h0"); got != 0 || series.Len() != 1 {
			t.Fatalf("h0 reclaimed: %d series left, %d labels in use", got, series.Len())
		}
		conns = append(conns, connect(t, testHub(t, n, "h9"), core.ConnInfo{Dialect: "json"}))
		if got := metrictest.Present(t, reg, "switchboard_connections", "hub", "h9"); got != 1 {
			t.Fatalf("connections{hub=h9} = %v, want 1 (label freed by h0)", got)
		}
		for _, c := range conns[1:] {
			c.Close("bye")
		}
	})
}

// TestReclaimRacesConnect runs connects, disconnects, REST-like calls and
// reclaims of one hub at once (with a zero-ish idle timeout the reclaim
// timer fires all the time): every live conn must stay in the node's hub of
// its name, reachable by a send.
func TestReclaimRacesConnect(t *testing.T) {
	n := testNode(t, core.Config{HubIdleTimeout: time.Nanosecond})
	const workers, rounds = 8, 300
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				h, release, err := n.AcquireHub("race")
				if err != nil {
					errs <- err
					return
				}
				l := &recLink{}
				c, err := h.Connect(core.ConnInfo{Codec: newCodec(1, ""), UserID: fmt.Sprint("u", w)}, l)
				release()
				if err != nil {
					errs <- err
					return
				}
				if got, _ := n.LookupHub("RACE"); got != c.Hub() {
					errs <- fmt.Errorf("round %d: live conn's hub is not the node's (%p, node has %p)", i, c.Hub(), got)
					return
				}
				v, _ := n.ViewHub("race")
				if err := v.Send(context.Background(), core.Target{Kind: core.ToConn, Name: c.ID()}, &core.Message{Data: []byte("m")}); err != nil {
					errs <- err
					return
				}
				if items := c.Drain(l, nil); len(items) != 1 {
					errs <- fmt.Errorf("round %d: live conn got %d items of a send to it, want 1", i, len(items))
					return
				}
				c.Close("bye")
			}
		})
		wg.Go(func() { // the REST side: tags and lookups that come and go
			for range rounds {
				v, err := n.ViewHub("race")
				if err != nil {
					errs <- err
					return
				}
				if err := v.TagUserGroup(fmt.Sprint("t", w), "g", time.Millisecond, true); err != nil {
					errs <- err
					return
				}
				v.GroupExists("g")
				v.UntagUserGroup(fmt.Sprint("t", w), "g")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually.Nil(t, 10*time.Second, func() error {
		if n.HubCount() != 0 {
			return fmt.Errorf("idle hub never reclaimed: %v", n.Hubs())
		}
		return nil
	})
}

// TestSendsCountedByKindAcrossReclaim: a hub looks its sends series up once per kind; a hub
// made again after the old one was reclaimed (its series deleted) counts into a new series.
func TestSendsCountedByKindAcrossReclaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		n := testNode(t, core.Config{Registerer: reg})
		send := func(h *core.Hub, k core.TargetKind, name string) {
			t.Helper()
			if err := h.Send(context.Background(), core.Target{Kind: k, Name: name}, &core.Message{Data: []byte("x")}); err != nil {
				t.Fatal(err)
			}
		}
		h := testHub(t, n, "chat")
		a := connect(t, h, core.ConnInfo{Dialect: "json"})
		send(h, core.ToAll, "")
		send(h, core.ToAll, "")
		send(h, core.ToGroup, "g")
		if got := metrictest.Present(t, reg, "switchboard_sends_total", "hub", "chat", "target", "all"); got != 2 {
			t.Fatalf("sends_total{target=all} = %v, want 2", got)
		}
		if got := metrictest.Present(t, reg, "switchboard_sends_total", "hub", "chat", "target", "group"); got != 1 {
			t.Fatalf("sends_total{target=group} = %v, want 1", got)
		}
		a.Close("bye")
		time.Sleep(2 * idleTimeout)
		synctest.Wait()
		if got := seriesOf(t, reg, "chat"); got != 0 {
			t.Fatalf("%d series of the reclaimed hub remain", got)
		}
		h = testHub(t, n, "chat")
		b := connect(t, h, core.ConnInfo{Dialect: "json"})
		defer b.Close("bye")
		send(h, core.ToAll, "")
		if got := metrictest.Present(t, reg, "switchboard_sends_total", "hub", "chat", "target", "all"); got != 1 {
			t.Fatalf("sends_total{target=all} of the hub made again = %v, want 1", got)
		}
	})
}
