package core_test

import (
	"math"

	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/heaptest"
)

// TestSeenAckHugeIDDoesNotPoisonWindow: an ackId far above the others (2^64-1)
// must not make every lower ackId a Duplicate; only a genuine repeat among the
// last 4096 distinct ids is one.
func TestSeenAckHugeIDDoesNotPoisonWindow(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "acks")
	c := connect(t, h, core.ConnInfo{})
	if c.SeenAck(math.MaxUint64) {
		t.Fatal("first use of 2^64-1 reported as a duplicate")
	}
	for id := uint64(1); id <= 10; id++ {
		if c.SeenAck(id) {
			t.Fatalf("ackId %d after 2^64-1 reported as a duplicate", id)
		}
	}
	for _, id := range []uint64{math.MaxUint64, 1, 5, 10} {
		if !c.SeenAck(id) {
			t.Errorf("repeated ackId %d not reported as a duplicate", id)
		}
	}
	// Descending and sparse ids are as good as ascending ones.
	for _, id := range []uint64{1 << 40, 1 << 20, 1 << 63, 3 << 20, 11} {
		if c.SeenAck(id) {
			t.Errorf("fresh ackId %d reported as a duplicate", id)
		}
	}
}

// TestSeenAckWindowBounded: the window forgets the oldest distinct id once
// 4096 newer ones were used, and its memory stays bounded however many ids a
// client uses.
func TestSeenAckWindowBounded(t *testing.T) {
	h := testHub(t, testNode(t, core.Config{}), "acks")
	c := connect(t, h, core.ConnInfo{})
	const window = 4096
	for id := uint64(0); id < window; id++ {
		c.SeenAck(id * 1000)
	}
	if !c.SeenAck(0) {
		t.Fatal("id 0 forgotten while still among the last 4096")
	}
	c.SeenAck(math.MaxUint64) // evicts 0, the oldest
	if c.SeenAck(0) {
		t.Fatal("id 0 still remembered after 4096 newer distinct ids")
	}

	// Memory: a million more distinct ids must not grow the window.
	grew := heaptest.Growth(func() {
		for id := uint64(1); id <= 1_000_000; id++ {
			c.SeenAck(id<<20 | 7)
		}
	})
	if grew > 1<<20 {
		t.Errorf("heap grew by %d bytes after 1e6 distinct ackIds; the window must stay bounded", grew)
	}
}
