package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// storedHistory is a DeliveringHistory whose deliveries the test makes:
// Store appends to the log; deliver hands the next stored message to the
// node, as a cluster's consumer does; onTop runs inside Top (after the
// joiner registered), so that a test can deliver messages while a join is
// between its Top and its join.
type storedHistory struct {
	mu        sync.Mutex
	log       []*core.Message
	delivered int
	node      core.StoredDeliverer
	onTop     func()
}

func (h *storedHistory) Keeps(string, string) bool { return true }

func (h *storedHistory) Append(context.Context, string, string, *core.Message) (func() error, error) {
	return nil, errors.New("not used")
}

func (h *storedHistory) Attach(d core.StoredDeliverer) { h.node = d }

func (h *storedHistory) Store(_ context.Context, op *core.Op) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Message.Offset, op.Message.Epoch = uint64(len(h.log)+1), "e"
	h.log = append(h.log, op.Message)
	return nil
}

// deliver delivers the stored messages not delivered yet.
func (h *storedHistory) deliver() {
	h.mu.Lock()
	msgs := h.log[h.delivered:]
	h.delivered = len(h.log)
	h.mu.Unlock()
	for _, m := range msgs {
		h.node.DeliverStored(&core.Op{Hub: "chat", Kind: core.OpSend, Target: core.Target{Kind: core.ToGroup, Name: m.Group}, Message: m})
	}
}

func (h *storedHistory) Top(string, string) (uint64, string) {
	h.mu.Lock()
	top := uint64(h.delivered) // what this node delivered (the contract of Top)
	h.mu.Unlock()
	if h.onTop != nil {
		h.onTop()
	}
	return top, "e"
}

func (h *storedHistory) Replay(_, _ string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*core.Message(nil), h.log[from.Offset:upTo]...), true
}

func (h *storedHistory) send(t *testing.T, hub *core.Hub, text string) {
	t.Helper()
	m := textMsg(text)
	m.Group = "g"
	if err := hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, m); err != nil {
		t.Fatal(err)
	}
}

// TestJoinStoredReplaysBuffersAndJoins: with a history that delivers
// itself, a send is stored and not delivered by the send (the history
// delivers it), and a recovering join gets the replay up to top, then what
// was delivered while it replayed, then the live messages: each once, in
// order.
func TestJoinStoredReplaysBuffersAndJoins(t *testing.T) {
	hist := &storedHistory{}
	n := testNode(t, core.Config{History: hist})
	h := testHub(t, n, "chat")
	member := connect(t, h, core.ConnInfo{})
	if _, err := h.JoinGroupFrom(member.Conn, "g", nil); err != nil {
		t.Fatal(err)
	}
	joiner := connect(t, h, core.ConnInfo{})
	for i := 1; i <= 3; i++ {
		hist.send(t, h, fmt.Sprint("m", i))
	}
	if got := member.bodies(); len(got) != 0 {
		t.Fatalf("the send delivered %q itself; the history delivers", got)
	}
	hist.deliver()
	hist.onTop = func() { // stored and delivered during the join, after its top
		hist.onTop = nil
		hist.send(t, h, "m4")
		hist.send(t, h, "m5")
		hist.deliver()
	}
	res, err := h.JoinGroupFrom(joiner.Conn, "g", &core.StreamPosition{Offset: 1, Epoch: "e"})
	if err != nil || !res.Recovered || res.Offset != 3 {
		t.Fatalf("join: %+v %v", res, err)
	}
	hist.send(t, h, "m6")
	hist.deliver()
	if got, want := strings.Join(joiner.bodies(), ","), "m2,m3,m4,m5,m6"; got != want {
		t.Errorf("joiner got %s, want %s", got, want)
	}
	if got, want := strings.Join(member.bodies(), ","), "m1,m2,m3,m4,m5,m6"; got != want {
		t.Errorf("member got %s, want %s", got, want)
	}
}

// TestJoinStoredBufferBounded: a recovering join whose buffer of messages
// delivered meanwhile passes the conn's queue limit sheds the conn as a slow
// consumer, and holds no more than that.
func TestJoinStoredBufferBounded(t *testing.T) {
	hist := &storedHistory{}
	n := testNode(t, core.Config{History: hist, Limits: core.Limits{MaxQueueBytes: 1000}})
	h := testHub(t, n, "chat")
	joiner := connect(t, h, core.ConnInfo{})
	hist.onTop = func() {
		hist.onTop = nil
		for i := range 20 {
			hist.send(t, h, fmt.Sprintf("%099d", i)) // 100 bytes each
		}
		hist.deliver()
	}
	_, err := h.JoinGroupFrom(joiner.Conn, "g", &core.StreamPosition{Offset: 0, Epoch: "e"})
	if !errors.Is(err, core.ErrSlowConsumer) {
		t.Fatalf("join with an overflowing buffer: %v, want ErrSlowConsumer", err)
	}
	if cl := joiner.link.closeCalls(); len(cl) != 1 {
		t.Errorf("closes %+v, want the slow consumer's", cl)
	}
	if joiner.InGroup("g") {
		t.Error("the shed conn joined the group")
	}
}
