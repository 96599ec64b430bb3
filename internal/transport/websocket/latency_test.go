package websocket

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
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

// A write that stalls (the client stops reading) and finishes in the slow
// lane is observed when its last byte is written, not when the slow lane
// takes it over: the latency of exactly the slow deliveries must not be
// cut short.
func TestDeliveryLatencyOfAStalledWriteIsObservedWhenWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1, WriteTimeout: time.Minute})
	e.prepare = smallBuffers
	c, p := e.dial(t, 4096)
	accepted := time.Now().UnixNano()
	chunk := []byte(strings.Repeat("s", 8192))
	items := make([]core.Item, (1<<20)/len(chunk)) // far more than the socket buffers take
	for i := range items {
		items[i] = core.Item{Body: chunk, Accepted: accepted}
	}
	p.src.push(items...) // at once: no write of a few of them alone, which would be observed
	p.sock.Wake()
	eventually.True(t, "the socket to stall", 30*time.Second, p.sock.slow.Load)
	if h := latencyOf(t, e); h != nil && h.GetSampleCount() != 0 {
		t.Fatalf("a write still in the slow lane was observed: count %d", h.GetSampleCount())
	}
	readFrom := time.Now().UnixNano() // nothing can be written before the client reads
	// Back to ordinary buffers: with the tiny ones, delayed acks make
	// loopback crawl (about 50 KB/s).
	p.sock.conn.(*net.TCPConn).SetWriteBuffer(1 << 20)
	c.conn.(*net.TCPConn).SetReadBuffer(1 << 20)
	go io.Copy(io.Discard, c.r)
	var h *dto.Histogram
	eventually.True(t, "the stalled write to be observed once written", 30*time.Second, func() bool {
		h = latencyOf(t, e)
		return h != nil && h.GetSampleCount() > 0
	})
	if min := float64(readFrom-accepted) / 1e9; h.GetSampleSum() < min {
		t.Errorf("sum = %v s, want at least the %v s the write waited for the client to read", h.GetSampleSum(), min)
	}
}
