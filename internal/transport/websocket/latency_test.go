package websocket

import (
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/switchboardhq/switchboard/internal/core"
)

// latencyOf returns the websocket series of switchboard_delivery_latency_seconds
// in e's registry (nil when there is none).
func latencyOf(t *testing.T, e *env) *dto.Histogram {
	t.Helper()
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "switchboard_delivery_latency_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "transport" && l.GetValue() == "websocket" {
					return m.GetHistogram()
				}
			}
		}
	}
	return nil
}

// A write that carries sends is observed once, from its oldest send's
// acceptance; writes of frames that are not sends (Accepted 0: control
// frames, replies, replays) are not.
func TestDeliveryLatencyObservedPerWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	c, p := e.dial(t, 0)
	read := func(n int) {
		t.Helper()
		for i := range n {
			c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := wsutil.ReadServerData(c.conn); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
	}
	p.src.push(core.Item{Body: []byte("control")})
	p.sock.Wake()
	read(1)
	if h := latencyOf(t, e); h != nil && h.GetSampleCount() != 0 {
		t.Fatalf("a write without sends was observed: %v", h)
	}

	accepted := time.Now().Add(-300 * time.Millisecond).UnixNano() // waited 0.3 s somewhere before the write
	p.src.push(core.Item{Body: []byte("newer"), Accepted: accepted + int64(200*time.Millisecond)},
		core.Item{Body: []byte("older"), Accepted: accepted}, core.Item{Body: []byte("reply")})
	p.sock.Wake()
	read(3)
	var h *dto.Histogram
	deadline := time.Now().Add(5 * time.Second)
	for h = latencyOf(t, e); (h == nil || h.GetSampleCount() == 0) && time.Now().Before(deadline); h = latencyOf(t, e) {
		time.Sleep(time.Millisecond) // the observation follows the write the client read
	}
	if h == nil {
		t.Fatal("no switchboard_delivery_latency_seconds{transport=\"websocket\"} series")
	}
	if h.GetSampleCount() != 1 {
		t.Fatalf("count = %d, want 1 (one per write)", h.GetSampleCount())
	}
	if s := h.GetSampleSum(); s < 0.3 || s > 60 {
		t.Errorf("sum = %v s, want the oldest send's wait (at least 0.3 s)", s)
	}
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 0.25 && b.GetCumulativeCount() != 0 {
			t.Errorf("observed under 0.25 s: the newer send was taken, not the oldest")
		}
	}
}
