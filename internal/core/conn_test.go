package core_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

// endLog records OnConnEnd calls.
type endLog struct {
	mu      sync.Mutex
	reasons map[string][]string
}

func (e *endLog) hook(c *core.Conn, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reasons == nil {
		e.reasons = map[string][]string{}
	}
	e.reasons[c.ID()] = append(e.reasons[c.ID()], reason)
}

func (e *endLog) get(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.reasons[id]...)
}

// TestSlowConsumer checks the queue bound for every target kind: the conn
// whose queued bytes pass MaxQueueBytes ends, its link is closed with 1008,
// and the other recipients keep receiving.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	kinds := []struct {
		name   string
		target func(slow client) core.Target
	}{
		{"conn", func(slow client) core.Target { return core.Target{Kind: core.ToConn, Name: slow.ID()} }},
		{"group", func(client) core.Target { return core.Target{Kind: core.ToGroup, Name: "g"} }},
		{"user", func(client) core.Target { return core.Target{Kind: core.ToUser, Name: "u"} }},
		{"all", func(client) core.Target { return core.Target{Kind: core.ToAll} }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			var ends endLog
			n := testNode(t, core.Config{Limits: core.Limits{MaxQueueBytes: 100}, OnConnEnd: ends.hook})
			h := testHub(t, n, "hub")
			slow := connect(t, h, core.ConnInfo{UserID: "u", Groups: []string{"g"}})
			fast := connect(t, h, core.ConnInfo{UserID: "u", Groups: []string{"g"}})
			body := strings.Repeat("x", 40)
			target := k.target(slow)
			for i := 0; i < 4; i++ {
				ok := within(t, "Send to a slow consumer", 5*time.Second, func() {
					if err := h.Send(context.Background(), target, textMsg(body)); err != nil {
						t.Errorf("Send: %v", err)
					}
				})
				if !ok {
					t.Fatalf("send %d to %s target deadlocked once the slow consumer crossed MaxQueueBytes", i, k.name)
				}
				fast.bodies() // the fast one drains after every send
			}
			eventually.True(t, "slow consumer to end", 5*time.Second, func() bool { return len(ends.get(slow.ID())) > 0 })
			calls := slow.link.closeCalls()
			if len(calls) != 1 || calls[0].code != 1008 {
				t.Errorf("slow link closes = %v, want one with code 1008", calls)
			}
			if r := ends.get(slow.ID()); len(r) != 1 || !strings.Contains(r[0], "slow consumer") {
				t.Errorf("OnConnEnd reasons = %q, want one mentioning slow consumer", r)
			}
			if got := slow.Drain(slow.link, nil); len(got) != 0 {
				t.Errorf("slow consumer still has %d items queued after the abort", len(got))
			}
			if fast.Ended() {
				t.Fatal("fast conn ended too")
			}
			if k.name == "conn" {
				target = core.Target{Kind: core.ToConn, Name: fast.ID()}
			}
			if err := h.Send(context.Background(), target, textMsg("after")); err != nil {
				t.Fatal(err)
			}
			if got := fast.bodies(); !slices.Equal(got, []string{"after"}) {
				t.Errorf("fast conn got %q after the slow one ended, want [after]", got)
			}
			if _, err := h.Conn(slow.ID()); !errors.Is(err, core.ErrConnNotFound) {
				t.Errorf("slow conn still registered: %v", err)
			}
		})
	}
}

// TestQueueBoundCountsBytes checks that the bound is on bytes, not
// messages, and that draining frees the budget.
func TestQueueBoundCountsBytes(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{Limits: core.Limits{MaxQueueBytes: 100}})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{})
	to := core.Target{Kind: core.ToConn, Name: c.ID()}
	for round := 0; round < 5; round++ {
		for i := 0; i < 10; i++ { // exactly 100 bytes: at the bound, not over it
			if err := h.Send(context.Background(), to, textMsg("0123456789")); err != nil {
				t.Fatal(err)
			}
		}
		if c.Ended() {
			t.Fatalf("round %d: conn ended at exactly MaxQueueBytes", round)
		}
		if got := len(c.bodies()); got != 10 {
			t.Fatalf("round %d: drained %d items, want 10", round, got)
		}
	}
}

func reliableNode(t *testing.T, lim core.Limits, window time.Duration, ends *endLog) (*core.Hub, *testCodec) {
	t.Helper()
	cfg := core.Config{Limits: lim, RecoveryWindow: window}
	if ends != nil {
		cfg.OnConnEnd = ends.hook
	}
	n := testNode(t, cfg)
	codec := &testCodec{key: 3, sequenced: true}
	return testHub(t, n, "hub"), codec
}

func TestReliableReplay(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, time.Minute, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel", Groups: []string{"g"}})
	send := func(s string) {
		t.Helper()
		if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("m1")
	send("m2")
	send("m3")
	if got, want := c.bodies(), []string{"#1 m1", "#2 m2", "#3 m3"}; !slices.Equal(got, want) {
		t.Fatalf("live: %q, want %q", got, want)
	}
	c.Ack(1)
	c.Send(core.Frame{Data: []byte("control")}) // not sequenced, not replayed
	send("m4")                                  // queued, never drained
	c.Detach(c.link, "socket gone")
	if c.Ended() {
		t.Fatal("reliable session ended on detach")
	}
	send("m5")
	send("m6")
	if got := c.Drain(c.link, nil); len(got) != 0 {
		t.Errorf("detached conn has %d items queued for a socket it does not have", len(got))
	}
	l2 := &recLink{}
	c2, err := h.Resume(c.ID(), "rel", l2)
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if c2 != c.Conn {
		t.Fatal("Resume returned another conn")
	}
	if l2.wakes.Load() == 0 {
		t.Error("Resume did not wake the new link")
	}
	c = client{c2, l2}
	want := []string{"#2 m2", "#3 m3", "#4 m4", "#5 m5", "#6 m6"}
	if got := c.bodies(); !slices.Equal(got, want) {
		t.Fatalf("replayed %q, want %q", got, want)
	}
	send("m7")
	if got := c.bodies(); !slices.Equal(got, []string{"#7 m7"}) {
		t.Errorf("after resume: %q, want [#7 m7]", got)
	}
	// Acked messages stay acked across a second recovery.
	c.Ack(6)
	c.Detach(l2, "again")
	l3 := &recLink{}
	if _, err := h.Resume(c.ID(), "rel", l3); err != nil {
		t.Fatal(err)
	}
	c = client{c.Conn, l3}
	if got := c.bodies(); !slices.Equal(got, []string{"#7 m7"}) {
		t.Errorf("second replay %q, want [#7 m7]", got)
	}
	if got := codec.encodes.Load(); got != 7 {
		t.Errorf("%d encodes for 7 messages: replay must reuse the encoded bodies", got)
	}
}

func TestResumeReplacesLiveLink(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, time.Minute, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	l2 := &recLink{}
	if _, err := h.Resume(c.ID(), "rel", l2); err != nil {
		t.Fatal(err)
	}
	if got := c.link.closeCalls(); len(got) != 1 || got[0].code != core.CloseNormal {
		t.Errorf("previous link closes = %v, want one 1000", got)
	}
	// The old socket's read loop ends later and detaches: no effect now.
	c.Detach(c.link, "old socket gone")
	if err := h.Send(context.Background(), core.Target{Kind: core.ToConn, Name: c.ID()}, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	c = client{c.Conn, l2}
	if got := c.bodies(); !slices.Equal(got, []string{"#1 m"}) {
		t.Errorf("after stale detach: %q, want [#1 m]", got)
	}
}

func TestResumeRefused(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, time.Minute, nil)
	rel := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	plain := connect(t, h, core.ConnInfo{Protocol: "plain"})
	tests := []struct {
		name, id, protocol string
	}{
		{"unknown id", "nope", "rel"},
		{"wrong protocol", rel.ID(), "other"},
		{"not sequenced", plain.ID(), "plain"},
	}
	for _, tt := range tests {
		if _, err := h.Resume(tt.id, tt.protocol, &recLink{}); !errors.Is(err, core.ErrNotRecoverable) {
			t.Errorf("%s: Resume = %v, want ErrNotRecoverable", tt.name, err)
		}
	}
	rel.Close("done")
	if _, err := h.Resume(rel.ID(), "rel", &recLink{}); !errors.Is(err, core.ErrNotRecoverable) {
		t.Errorf("closed session: Resume = %v, want ErrNotRecoverable", err)
	}
}

func TestDetachEndsPlainSession(t *testing.T) {
	t.Parallel()
	var ends endLog
	n := testNode(t, core.Config{OnConnEnd: ends.hook})
	h := testHub(t, n, "hub")
	c := connect(t, h, core.ConnInfo{Groups: []string{"g"}})
	c.Detach(&recLink{}, "not my link")
	if c.Ended() {
		t.Fatal("Detach of a foreign link ended the conn")
	}
	c.Detach(c.link, "socket gone")
	if !c.Ended() {
		t.Fatal("plain conn not ended by Detach")
	}
	if h.GroupExists("g") {
		t.Error("group survives its only member")
	}
	if got := ends.get(c.ID()); !slices.Equal(got, []string{"socket gone"}) {
		t.Errorf("end reasons %q", got)
	}
}

func TestReplayOverflowEndsSession(t *testing.T) {
	t.Parallel()
	var ends endLog
	h, codec := reliableNode(t, core.Limits{ReplayMessages: 3}, time.Minute, &ends)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	to := core.Target{Kind: core.ToConn, Name: c.ID()}
	for i := 0; i < 3; i++ {
		if err := h.Send(context.Background(), to, textMsg("m")); err != nil {
			t.Fatal(err)
		}
	}
	c.bodies() // written to the socket but not acknowledged
	c.Detach(c.link, "gone")
	if err := h.Send(context.Background(), to, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the session to end after 4 unacknowledged messages with ReplayMessages=3", 5*time.Second, c.Ended)
	if r := ends.get(c.ID()); len(r) != 1 || !strings.Contains(r[0], "unacknowledged") {
		t.Errorf("end reasons %q", r)
	}
	if _, err := h.Resume(c.ID(), "rel", &recLink{}); !errors.Is(err, core.ErrNotRecoverable) {
		t.Errorf("Resume after overflow = %v, want ErrNotRecoverable", err)
	}
}

// TestReplayOverflowOnGroupSend is TestReplayOverflowEndsSession with the
// overflowing message sent to a group: the session ends during a fan-out.
func TestReplayOverflowOnGroupSend(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{ReplayMessages: 3}, time.Minute, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel", Groups: []string{"g"}})
	other := connect(t, h, core.ConnInfo{Groups: []string{"g"}})
	for i := 0; i < 4; i++ {
		ok := within(t, "Send to a group", 5*time.Second, func() {
			h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m"))
		})
		if !ok {
			t.Fatalf("send %d to the group deadlocked once a member's replay buffer overflowed", i)
		}
	}
	eventually.True(t, "the session to end after 4 unacknowledged messages with ReplayMessages=3", 5*time.Second, c.Ended)
	if got := len(other.bodies()); got != 4 {
		t.Errorf("other member got %d messages, want 4", got)
	}
}

func TestReplayOverflowWhileAttached(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{ReplayBytes: 50}, time.Minute, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	to := core.Target{Kind: core.ToConn, Name: c.ID()}
	for i := 0; i < 10 && !c.Ended(); i++ {
		if err := h.Send(context.Background(), to, textMsg("0123456789")); err != nil {
			t.Fatal(err)
		}
		c.bodies()
		if i == 2 {
			c.Ack(3) // acking frees the budget
		}
	}
	eventually.True(t, "the session to end with more unacknowledged bytes than ReplayBytes", 5*time.Second, c.Ended)
	if got := c.link.closeCalls(); len(got) != 1 || got[0].code != 1008 {
		t.Errorf("link closes %v, want one 1008", got)
	}
}

func TestRecoveryWindowExpires(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testRecoveryWindowExpires)
}

func testRecoveryWindowExpires(t *testing.T) {
	var ends endLog
	const window = 30 * time.Second // on the bubble's clock
	h, codec := reliableNode(t, core.Limits{}, window, &ends)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel", UserID: "u", Groups: []string{"g"}})
	c.Detach(c.link, "socket gone")
	time.Sleep(window - time.Nanosecond)
	synctest.Wait()
	if c.Ended() {
		t.Fatal("ended before the window passed")
	}
	if _, err := h.Conn(c.ID()); err != nil {
		t.Errorf("recoverable conn not found: %v", err)
	}
	time.Sleep(time.Nanosecond)
	synctest.Wait()
	if !c.Ended() {
		t.Fatal("not ended when the window passed")
	}
	if _, err := h.Resume(c.ID(), "rel", &recLink{}); !errors.Is(err, core.ErrNotRecoverable) {
		t.Errorf("Resume after the window = %v, want ErrNotRecoverable", err)
	}
	if h.GroupExists("g") || h.UserExists("u") {
		t.Error("expired session still indexed")
	}
	if r := ends.get(c.ID()); len(r) != 1 || !strings.Contains(r[0], "recovery window expired") || !strings.Contains(r[0], "socket gone") {
		t.Errorf("end reasons %q", r)
	}
}

func TestResumeStopsRecoveryTimer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const window = 30 * time.Millisecond
		h, codec := reliableNode(t, core.Limits{}, window, nil)
		c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
		c.Detach(c.link, "gone")
		if _, err := h.Resume(c.ID(), "rel", &recLink{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * window) // the bubble's clock: every timer due by then has fired
		synctest.Wait()
		if c.Ended() {
			t.Fatal("resumed session ended by the old recovery timer")
		}
	})
}

func TestNegativeRecoveryWindowEndsOnDetach(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, -1, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	c.Detach(c.link, "gone")
	if !c.Ended() {
		t.Error("negative RecoveryWindow: session waits for its client")
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	n := testNode(t, core.Config{})
	h := testHub(t, n, "hub")
	var clients []client
	for i := 0; i < 300; i++ {
		clients = append(clients, connect(t, h, core.ConnInfo{Groups: []string{"g"}}))
	}
	if err := n.Shutdown(context.Background(), "bye"); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if !c.Ended() {
			t.Fatalf("conn %d not ended", i)
		}
		if got := c.link.closeCalls(); len(got) != 1 || got[0] != (closeCall{core.CloseGoingAway, "bye"}) {
			t.Fatalf("conn %d closes %v", i, got)
		}
	}
	if _, err := h.Connect(core.ConnInfo{Codec: newCodec(1, "")}, &recLink{}); !errors.Is(err, core.ErrNodeClosed) {
		t.Errorf("Connect after Shutdown = %v, want ErrNodeClosed", err)
	}
}

// TestResumeAfterShed resumes a reliable session right after a fan-out shed
// it for overflowing its replay buffer. The shed session must not take the
// new socket: either Resume refuses, or the new link is closed once the
// session ends. A socket attached to a dead session is never written to nor
// closed, and pings keep it open for ever.
func TestResumeAfterShed(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{ReplayMessages: 1}, time.Minute, nil)
	zombies := 0
	const rounds = 300
	for i := 0; i < rounds; i++ {
		c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel", Groups: []string{"g"}})
		c.Detach(c.link, "gone")
		for j := 0; j < 2; j++ {
			h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m"))
		}
		l := &recLink{}
		_, err := h.Resume(c.ID(), "rel", l)
		eventually.True(t, "the shed session to end", 5*time.Second, c.Ended)
		if err == nil && len(l.closeCalls()) == 0 {
			zombies++
		}
	}
	if zombies > 0 {
		t.Errorf("%d of %d resumes attached a new link to a session already shed; the link was never closed", zombies, rounds)
	}
}

// TestReplacedLinkDrainsNothing resumes a session whose old socket is still
// attached with unacknowledged messages: the replay belongs to the new link,
// and the old one's writer (which the replacement wakes to send its close
// frame) must not take it.
func TestReplacedLinkDrainsNothing(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, time.Minute, nil)
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel"})
	to := core.Target{Kind: core.ToConn, Name: c.ID()}
	for _, m := range []string{"a", "b"} {
		if err := h.Send(context.Background(), to, textMsg(m)); err != nil {
			t.Fatal(err)
		}
	}
	c.bodies() // written to the old socket, never acknowledged
	l2 := &recLink{}
	if _, err := h.Resume(c.ID(), "rel", l2); err != nil {
		t.Fatal(err)
	}
	if stolen := c.Drain(c.link, nil); len(stolen) != 0 {
		t.Fatalf("the replaced link drained %d replayed messages", len(stolen))
	}
	if got := (client{c.Conn, l2}).bodies(); !slices.Equal(got, []string{"#1 a", "#2 b"}) {
		t.Errorf("new link got %q, want the replay [#1 a #2 b]", got)
	}
}

// resumeCodec is a sequenced codec that announces a resumed stream, as
// SignalR's Sequence message does, and has no form of messages whose data is
// "skip".
type resumeCodec struct{ testCodec }

func (c *resumeCodec) ResumeFrame(next uint64) core.Frame {
	return core.Frame{Data: []byte("resume@" + strconv.FormatUint(next, 10))}
}

func (c *resumeCodec) EncodeMessage(m *core.Message) core.Frame {
	if string(m.Data) == "skip" {
		return core.Frame{}
	}
	return c.testCodec.EncodeMessage(m)
}

func (c *resumeCodec) AppendHead(dst []byte, seq uint64, _ []byte) []byte { return dst }

func TestResumeFramePrecedesReplay(t *testing.T) {
	n := testNode(t, core.Config{})
	h := testHub(t, n, "h")
	codec := &resumeCodec{testCodec{key: 2, sequenced: true}}
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "p"})
	for _, s := range []string{"a", "skip", "b", "c"} {
		c.Deliver(textMsg(s))
	}
	if got := c.bodies(); strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("first link got %q; a message without a form must be skipped and not numbered", got)
	}
	c.Ack(1) // "a" acknowledged: b (2) and c (3) are replayed
	c.Detach(c.link, "dropped")
	l2 := &recLink{}
	if _, err := h.Resume(c.ID(), "p", l2); err != nil {
		t.Fatal(err)
	}
	c.Deliver(textMsg("d"))
	var got []string
	for _, it := range c.Drain(l2, nil) {
		got = append(got, string(it.Body))
	}
	if strings.Join(got, ",") != "resume@2,b,c,d" {
		t.Fatalf("resumed link got %q, want resume@2,b,c,d", got)
	}
	// Everything acknowledged: a later resume announces the next new id.
	c.Ack(4)
	c.Detach(l2, "dropped again")
	l3 := &recLink{}
	if _, err := h.Resume(c.ID(), "p", l3); err != nil {
		t.Fatal(err)
	}
	if got := c.Drain(l3, nil); len(got) != 1 || string(got[0].Body) != "resume@5" {
		t.Fatalf("second resume got %v, want only resume@5", got)
	}
}

// goingAwayCodec says goodbye differently when the server shuts down.
type goingAwayCodec struct{ testCodec }

func (c *goingAwayCodec) EncodeGoingAway(reason string) core.Frame {
	return core.Frame{Data: []byte("going-away:" + reason)}
}

func TestShutdownUsesGoingAwayFrame(t *testing.T) {
	n := testNode(t, core.Config{})
	h := testHub(t, n, "h")
	ga := connect(t, h, core.ConnInfo{Codec: &goingAwayCodec{testCodec{key: 3}}})
	plain := connect(t, h, core.ConnInfo{})
	gaOther := connect(t, h, core.ConnInfo{Codec: &goingAwayCodec{testCodec{key: 3}}})
	if err := h.CloseConns(context.Background(), core.Target{Kind: core.ToConn, Name: gaOther.ID()}, "kicked"); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background(), "bye"); err != nil {
		t.Fatal(err)
	}
	if got := ga.bodies(); len(got) != 1 || got[0] != "going-away:bye" {
		t.Fatalf("going-away codec got %q", got)
	}
	if got := plain.bodies(); len(got) != 1 || got[0] != "disconnected:bye" {
		t.Fatalf("plain codec got %q", got)
	}
	if got := gaOther.bodies(); len(got) != 1 || got[0] != "disconnected:kicked" {
		t.Fatalf("a server close that is not a shutdown got %q", got)
	}
}

// TestDeliverReplyKeepsBoundedReplies: replies are sequenced and replayed
// like data messages, but a client that never acknowledges them (the
// official JavaScript client ignores an invokeResponse's sequenceId) keeps
// only the last few in the replay buffer instead of filling it and being
// closed. Without the bound the 4th reply below overflows a 3-message
// replay buffer and ends the conn.
func TestDeliverReplyKeepsBoundedReplies(t *testing.T) {
	n := testNode(t, core.Config{Limits: core.Limits{ReplayMessages: 3}})
	h := testHub(t, n, "h")
	codec := &resumeCodec{testCodec{key: 2, sequenced: true}}
	c := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "p"})
	c.Deliver(textMsg("a"))
	for _, s := range []string{"r1", "r2", "r3", "r4", "r5"} {
		c.DeliverReply(textMsg(s), 2)
	}
	if c.Ended() {
		t.Fatal("unacknowledged replies overflowed the replay buffer and ended the conn")
	}
	c.bodies() // the first link took everything
	c.Detach(c.link, "dropped")
	l2 := &recLink{}
	if _, err := h.Resume(c.ID(), "p", l2); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range c.Drain(l2, nil) {
		got = append(got, string(it.Body))
	}
	if strings.Join(got, ",") != "resume@1,a,r4,r5" {
		t.Fatalf("resumed link got %q, want resume@1,a,r4,r5 (data messages all kept, the last 2 replies)", got)
	}
	// An acknowledgement covers replies as it covers data messages.
	c.Ack(6)
	c.Detach(l2, "dropped again")
	l3 := &recLink{}
	if _, err := h.Resume(c.ID(), "p", l3); err != nil {
		t.Fatal(err)
	}
	if got := c.Drain(l3, nil); len(got) != 1 || string(got[0].Body) != "resume@7" {
		t.Fatalf("after the ack the resume got %v, want only resume@7", got)
	}
}

// Sends are stamped with their acceptance time, which their queued items
// carry to the transports (the delivery latency); a replay after a resume
// is not a delivery to measure, so its items carry none.
func TestSendsCarryAcceptedTime(t *testing.T) {
	t.Parallel()
	h, codec := reliableNode(t, core.Limits{}, time.Minute, nil)
	rel := connect(t, h, core.ConnInfo{Codec: codec, Protocol: "rel", Groups: []string{"g"}})
	plain := connect(t, h, core.ConnInfo{Protocol: "plain", Groups: []string{"g"}})
	before := time.Now().UnixNano()
	if err := h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, textMsg("m")); err != nil {
		t.Fatal(err)
	}
	kept := &core.Message{Type: core.Text, Data: []byte("k"), Accepted: 42} // a retried send keeps its first time
	if err := h.Send(context.Background(), core.Target{Kind: core.ToConn, Name: plain.ID()}, kept); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano()
	for _, c := range []client{rel, plain} {
		items := c.Drain(c.link, nil)
		if len(items) == 0 {
			t.Fatalf("%s: nothing queued", c.ID())
		}
		if a := items[0].Accepted; a < before || a > after {
			t.Errorf("%s: Accepted = %d, want between %d and %d", c.ID(), a, before, after)
		}
		if c.Conn == plain.Conn && (len(items) != 2 || items[1].Accepted != 42) {
			t.Errorf("plain: items %+v, want the second with Accepted 42", items)
		}
	}
	rel.Conn.Send(core.Frame{Data: []byte("ack")})
	if items := rel.Drain(rel.link, nil); len(items) != 1 || items[0].Accepted != 0 {
		t.Errorf("control frame: %+v, want Accepted 0", items)
	}
	l2 := &recLink{}
	if _, err := h.Resume(rel.ID(), "rel", l2); err != nil {
		t.Fatal(err)
	}
	items := rel.Drain(l2, nil) // the replay of the unacknowledged send
	if len(items) != 1 || items[0].Accepted != 0 {
		t.Errorf("replay: %+v, want one item with Accepted 0", items)
	}
}

// A queued item is what a send costs per recipient in every queue and
// replay buffer: the delivery latency's stamp kept it at 56 bytes (its
// bools side by side). A message is allocated once per send: with the
// 8-byte header the runtime adds to objects of more than 512 bytes that
// hold pointers, at most 696 bytes stay in the 704-byte size class (704
// took the next one, 768, in BenchmarkBroadcast).
func TestItemAndMessageSize(t *testing.T) {
	if n := unsafe.Sizeof(core.Item{}); n > 56 {
		t.Errorf("core.Item is %d bytes, want at most 56", n)
	}
	if n := unsafe.Sizeof(core.Message{}); n > 696 {
		t.Errorf("core.Message is %d bytes, want at most 696", n)
	}
}
