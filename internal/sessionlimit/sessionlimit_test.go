package sessionlimit

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/core"
)

type nopLink struct{ closed int }

func (l *nopLink) Wake()             {}
func (l *nopLink) Close(int, string) { l.closed++ }

type codec struct{}

func (codec) Key() int                                         { return 1 }
func (codec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (codec) Sequenced() bool                                  { return false }
func (codec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (codec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

func setup(t *testing.T, p Policy) (*Limiter, *core.Hub, *prometheus.Registry) {
	t.Helper()
	n, err := core.NewNode(core.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.Hub("chat")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l, err := New(func(string) Policy { return p }, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	return l, h, reg
}

func connect(t *testing.T, h *core.Hub, user string) *core.Conn {
	t.Helper()
	c, err := h.Connect(core.ConnInfo{UserID: user, Codec: codec{}}, &nopLink{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func notice(p Policy, reason, newConn string) *core.Message {
	return &core.Message{Type: core.Text, Data: []byte(p.Notice + ":" + newConn)}
}

// TestEvictClosesOnlyOlder: with max 2, a third connection closes the
// oldest; an older connection that checks late (after newer ones came)
// closes none of the newer ones.
func TestEvictClosesOnlyOlder(t *testing.T) {
	l, h, reg := setup(t, Policy{Max: 2, CloseOldest: true, Notice: "Dup"})
	c1 := connect(t, h, "u")
	c2 := connect(t, h, "u")
	c3 := connect(t, h, "u")
	connect(t, h, "v") // another user
	if n := l.Evict(context.Background(), c1, "test", notice); n != 0 {
		t.Errorf("the oldest connection's late check closed %d", n)
	}
	if n := l.Evict(context.Background(), c3, "test", notice); n != 1 {
		t.Errorf("the newest closed %d, want 1", n)
	}
	if !c1.Ended() || c2.Ended() || c3.Ended() {
		t.Errorf("ended: c1 %v c2 %v c3 %v; want only c1", c1.Ended(), c2.Ended(), c3.Ended())
	}
	if got := testutil.ToFloat64(l.actions.WithLabelValues("test", "closed_oldest")); got != 1 {
		t.Errorf("closed_oldest = %v", got)
	}
	_ = reg
}

// TestAdmitRejectsAtLimit: reject_new refuses a user at the limit, not an
// anonymous connection or another user, and counts the refusal.
func TestAdmitRejectsAtLimit(t *testing.T) {
	l, h, _ := setup(t, Policy{Max: 1})
	ctx := context.Background()
	if err := l.Admit(ctx, h, "u", "test"); err != nil {
		t.Fatalf("first: %v", err)
	}
	connect(t, h, "u")
	if err := l.Admit(ctx, h, "u", "test"); !errors.Is(err, ErrLimit) {
		t.Errorf("second: %v, want ErrLimit", err)
	}
	if err := l.Admit(ctx, h, "", "test"); err != nil {
		t.Errorf("anonymous: %v", err)
	}
	if err := l.Admit(ctx, h, "v", "test"); err != nil {
		t.Errorf("another user: %v", err)
	}
	if got := testutil.ToFloat64(l.actions.WithLabelValues("test", "rejected")); got != 1 {
		t.Errorf("rejected = %v", got)
	}
	var nilLimiter *Limiter
	if p := nilLimiter.Policy("chat"); p.Max != 0 {
		t.Errorf("nil limiter policy %+v", p)
	}
}
