package core_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

// stress runs joins, leaves, sends, closes and reconnects on one hub from
// many goroutines for d, then checks that the indexes agree with the conns.
func stress(t *testing.T, d time.Duration) {
	const (
		slots  = 32
		groups = 8
		users  = 4
	)
	// The bounds are out of reach here: overflows are tested on their own
	// (TestSlowConsumer, TestReplayOverflow*).
	n := testNode(t, core.Config{
		Limits:         core.Limits{MaxQueueBytes: 1 << 40, ReplayMessages: 1 << 40, ReplayBytes: 1 << 40},
		RecoveryWindow: 5 * time.Millisecond,
	})
	h := testHub(t, n, "hub")
	rel := &testCodec{key: 4, sequenced: true}

	var mu sync.Mutex // guards conns
	conns := make([]client, slots)
	newConn := func(i int) client {
		info := core.ConnInfo{UserID: "u" + strconv.Itoa(i%users), Groups: []string{"g" + strconv.Itoa(i%groups)}}
		if i%4 == 0 {
			info.Codec, info.Protocol = rel, "rel"
		}
		return connect(t, h, info)
	}
	for i := range conns {
		conns[i] = newConn(i)
	}
	pick := func(r *rand.Rand) (int, client) {
		i := r.IntN(slots)
		mu.Lock()
		defer mu.Unlock()
		return i, conns[i]
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var ops atomic.Int64
	worker := func(seed uint64, fn func(r *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed))
			for ctx.Err() == nil {
				fn(r)
				ops.Add(1)
			}
		}()
	}
	group := func(r *rand.Rand) string { return "g" + strconv.Itoa(r.IntN(groups)) }
	for s := uint64(0); s < 4; s++ {
		worker(s, func(r *rand.Rand) { // join / leave
			_, c := pick(r)
			switch r.IntN(4) {
			case 0, 1:
				h.JoinGroup(c.Conn, group(r))
			case 2:
				h.LeaveGroup(c.Conn, group(r))
			case 3:
				if r.IntN(2) == 0 {
					h.AddUserToGroup("u"+strconv.Itoa(r.IntN(users)), group(r))
				} else {
					h.RemoveUserFromGroup("u"+strconv.Itoa(r.IntN(users)), group(r))
				}
			}
		})
	}
	for s := uint64(10); s < 14; s++ {
		worker(s, func(r *rand.Rand) { // send
			_, c := pick(r)
			var tg core.Target
			switch r.IntN(4) {
			case 0:
				tg = core.Target{Kind: core.ToAll, Excluded: []string{c.ID()}}
			case 1:
				tg = core.Target{Kind: core.ToGroup, Name: group(r)}
			case 2:
				tg = core.Target{Kind: core.ToUser, Name: "u" + strconv.Itoa(r.IntN(users))}
			case 3:
				tg = core.Target{Kind: core.ToConn, Name: c.ID()}
			}
			if r.IntN(8) == 0 {
				h.Publish(ctx, c.Conn, group(r), textMsg("p"), true)
				return
			}
			h.Send(ctx, tg, textMsg("m"))
		})
	}
	worker(20, func(r *rand.Rand) { // close / detach / resume / reconnect
		i, c := pick(r)
		switch r.IntN(5) {
		case 0:
			c.Close("bye")
		case 1:
			h.CloseConns(ctx, core.Target{Kind: core.ToGroup, Name: group(r)}, "kick")
		case 2:
			c.Detach(c.link, "gone")
		case 3:
			l := &recLink{}
			if rc, err := h.Resume(c.ID(), c.Protocol(), l); err == nil {
				mu.Lock()
				conns[i] = client{rc, l}
				mu.Unlock()
			}
		case 4:
			c.Ack(uint64(r.IntN(100)))
		}
		if c.Ended() && r.IntN(2) == 0 {
			nc := newConn(i)
			mu.Lock()
			conns[i] = nc
			mu.Unlock()
		}
	})
	worker(30, func(r *rand.Rand) { // the writer
		_, c := pick(r)
		c.Drain(c.link, nil)
		c.Groups()
		h.ListGroup(group(r), "", 10)
	})
	waitGroup(t, &wg, d+30*time.Second)
	if ops.Load() < 100 {
		t.Fatalf("only %d operations ran", ops.Load())
	}

	// The indexes agree with the conns.
	for g := 0; g < groups; g++ {
		name := "g" + strconv.Itoa(g)
		page, _ := h.ListGroup(name, "", 1<<20)
		for _, m := range page {
			c, err := h.Conn(m.ConnID)
			if err != nil {
				t.Errorf("group %s lists conn %s, which the hub does not know (%v)", name, m.ConnID, err)
				continue
			}
			if !c.InGroup(name) {
				t.Errorf("group %s lists conn %s, which is not in it (its groups: %q)", name, m.ConnID, c.Groups())
			}
		}
	}
	for _, c := range conns {
		if c.Ended() {
			continue
		}
		for _, g := range c.Groups() {
			page, _ := h.ListGroup(g, "", 1<<20)
			found := false
			for _, m := range page {
				found = found || m.ConnID == c.ID()
			}
			if !found {
				t.Errorf("conn %s is in group %s, which does not list it", c.ID(), g)
			}
		}
	}
	if err := n.Shutdown(context.Background(), "end"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "every conn to end", 5*time.Second, func() bool { return h.ConnCount() == 0 })
	for g := 0; g < groups; g++ {
		if name := "g" + strconv.Itoa(g); h.GroupExists(name) {
			page, _ := h.ListGroup(name, "", 100)
			t.Errorf("group %s still has members after every conn ended: %v", name, page)
		}
	}
	for u := 0; u < users; u++ {
		if name := "u" + strconv.Itoa(u); h.UserExists(name) {
			t.Errorf("user %s still exists after every conn ended", name)
		}
	}
	t.Logf("%d operations", ops.Load())
}

// waitGroup waits for wg and fails with every goroutine's stack if it takes
// longer than timeout.
func waitGroup(t *testing.T, wg *sync.WaitGroup, timeout time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("workers did not stop within %v (deadlock):\n%s", timeout, buf)
	}
}

func TestConcurrentStress(t *testing.T) {
	d := 2 * time.Second
	if testing.Short() {
		d = 300 * time.Millisecond
	}
	stress(t, d)
}

// TestJoinLeaveRace runs JoinGroup and LeaveGroup of the same conn and group
// concurrently and checks after each pair that the group index and the
// conn's own group list agree.
func TestJoinLeaveRace(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{})
	inIndex := func() bool {
		page, _ := h.ListGroup("g", "", 10)
		return len(page) == 1
	}
	const rounds = 20000
	bad := 0
	for i := 0; i < rounds && bad == 0; i++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; h.JoinGroup(c.Conn, "g") }()
		go func() { defer wg.Done(); <-start; h.LeaveGroup(c.Conn, "g") }()
		close(start)
		wg.Wait()
		if c.InGroup("g") != inIndex() {
			bad++
			t.Errorf("round %d: conn.InGroup = %v but the group index lists it: %v", i, c.InGroup("g"), inIndex())
		}
		h.LeaveGroup(c.Conn, "g")
		if inIndex() {
			t.Fatalf("round %d: conn left the group but the index still lists it (phantom member)", i)
		}
	}
}

// TestNoGoroutineLeak runs connects, sends, recoveries with timers that
// fire, and closes, then checks the goroutine count returns to its start.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	h, codec := reliableNode(t, core.Limits{}, 5*time.Millisecond, nil)
	var clients []client
	for i := 0; i < 100; i++ {
		info := core.ConnInfo{Groups: []string{"g"}}
		if i%2 == 0 {
			info.Codec, info.Protocol = codec, "rel"
		}
		clients = append(clients, connect(t, h, info))
	}
	for i := 0; i < 10; i++ {
		h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m"))
	}
	for i, c := range clients {
		switch i % 3 {
		case 0:
			c.Detach(c.link, "gone") // reliable ones wait for the timer
		case 1:
			c.Close("bye")
		}
	}
	h.CloseConns(context.Background(), core.Target{Kind: core.ToAll}, "end")
	eventually.True(t, "every conn to end", 5*time.Second, func() bool { return h.ConnCount() == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines before, %d after:\n%s", before, now, buf)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
