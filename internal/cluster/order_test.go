package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

func TestMarkerEnvelope(t *testing.T) {
	for _, seq := range []uint64{1, 1 << 62, math.MaxUint64} {
		b := encodeMarker(nil, "node-1", seq)
		if !isMarker(b) {
			t.Fatalf("seq %d: not seen as a marker", seq)
		}
		if _, _, err := decodeOp(b); !errors.Is(err, errEnvelope) {
			t.Errorf("seq %d: decodeOp took a marker: %v", seq, err)
		}
		origin, got, err := decodeMarker(b)
		if err != nil || origin != "node-1" || got != seq {
			t.Fatalf("seq %d: decoded %q %d %v", seq, origin, got, err)
		}
		for i := range b { // every truncation is refused
			if _, _, err := decodeMarker(b[:i]); !errors.Is(err, errEnvelope) {
				t.Errorf("seq %d: %d of %d bytes: %v", seq, i, len(b), err)
			}
		}
		if _, _, err := decodeMarker(append(b, 0)); !errors.Is(err, errEnvelope) {
			t.Errorf("seq %d: a trailing byte was taken: %v", seq, err)
		}
	}
	for _, op := range sampleOps(t) { // an op is never a marker
		if isMarker(encodeOp(nil, "n", op)) {
			t.Errorf("op %+v seen as a marker", op)
		}
	}
}

// FuzzDecodeMarker: any input decodes to a marker or an errEnvelope error,
// never a panic; a marker that decodes encodes to one that decodes the same.
func FuzzDecodeMarker(f *testing.F) {
	f.Add(encodeMarker(nil, "node-1", 42))
	f.Add([]byte{1, 0, 0, flagMarker, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		origin, seq, err := decodeMarker(b)
		if err != nil {
			if !errors.Is(err, errEnvelope) {
				t.Fatalf("error %v is not errEnvelope", err)
			}
			return
		}
		if o2, s2, err := decodeMarker(encodeMarker(nil, origin, seq)); err != nil || o2 != origin || s2 != seq {
			t.Fatalf("re-encoded marker decodes to %q %d %v", o2, s2, err)
		}
	})
}

// TestAwaitMarker: a node waits for another node's marker until it came; a
// marker that never comes is waited for a bounded time and counted.
func TestAwaitMarker(t *testing.T) {
	ns := natstest.Start(t, 0)
	b1, _ := attach(t, join(t, ns.URL(), "n1"), "wps")
	b2, _ := attach(t, join(t, ns.URL(), "n2"), "wps")
	ctx := context.Background()
	for range 50 {
		seq := b1.mark()
		if seq == 0 {
			t.Fatal("NATS did not take the marker")
		}
		b2.awaitMarker(ctx, "n1", seq)
		b2.ordMu.Lock()
		got := b2.delivered["n1"].seq
		b2.ordMu.Unlock()
		if got < seq {
			t.Fatalf("awaitMarker returned with marker %d delivered, want %d", got, seq)
		}
	}
	if n := testutil.ToFloat64(b2.ordWaits); n != 0 {
		t.Fatalf("order_wait counted %v for markers that came", n)
	}
	b2.awaitMarker(ctx, "n3", 7) // no such node: never comes
	if n := testutil.ToFloat64(b2.ordWaits); n != 1 {
		t.Fatalf("order_wait counted %v for a marker that never came, want 1", n)
	}
}

// TestMarkerRecordsForgetGoneNodes: with maxNodes records of nodes that are
// gone (nodes restarted with new ids), a live node's marker is still
// recorded, so its requests still wait for its ops.
func TestMarkerRecordsForgetGoneNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	c2 := join(t, ns.URL(), "n2")
	b1, _ := attach(t, join(t, ns.URL(), "n1"), "wps")
	b2, _ := attach(t, c2, "wps")
	eventually.True(t, "n2 sees n1", 10*time.Second, func() bool { return slices.Contains(c2.liveNodes(), "n1") })
	b2.ordMu.Lock()
	for i := range maxNodes {
		b2.delivered[fmt.Sprintf("gone-%d", i)] = &originSeq{seq: 1}
	}
	b2.ordMu.Unlock()
	seq := b1.mark()
	b2.awaitMarker(context.Background(), "n1", seq)
	b2.ordMu.Lock()
	o, n := b2.delivered["n1"], len(b2.delivered)
	b2.ordMu.Unlock()
	if o == nil || o.seq != seq || n > 2 {
		t.Fatalf("n1's record %+v, %d records, want seq %d and the gone nodes forgotten", o, n, seq)
	}
	if got := testutil.ToFloat64(b2.ordWaits); got != 0 {
		t.Fatalf("order_wait counted %v", got)
	}
}
