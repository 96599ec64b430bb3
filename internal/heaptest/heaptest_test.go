package heaptest

import "testing"

var kept [][]byte

// TestGrowthCountsWhatStaysReachable: 8 MiB kept is counted, 8 MiB dropped
// is not.
func TestGrowthCountsWhatStaysReachable(t *testing.T) {
	if g := Growth(func() { kept = append(kept, make([]byte, 8<<20)) }); g < 8<<20 {
		t.Errorf("kept 8 MiB, Growth = %d", g)
	}
	kept = nil
	if g := Growth(func() { _ = make([]byte, 8<<20) }); g > 1<<20 {
		t.Errorf("dropped 8 MiB, Growth = %d", g)
	}
}
