package bench

import (
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 10, 64, 1000} {
		p := appendPayload(nil, 3, 17, 1732150000000000000, size)
		if size > 30 && len(p) != size {
			t.Fatalf("size %d: got %d bytes", size, len(p))
		}
		s, q, ts, err := parsePayload(p)
		if err != nil || s != 3 || q != 17 || ts != 1732150000000000000 {
			t.Fatalf("size %d: parse(%q) = %d %d %d %v", size, p, s, q, ts, err)
		}
	}
	for _, bad := range []string{"", "p", "x1:2:3:", "p1:2:3", "p1::3:", "pa:1:2:", "p99999999999:1:2:"} {
		if _, _, _, err := parsePayload([]byte(bad)); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestAccounting(t *testing.T) {
	cases := []struct {
		name   string
		got    map[uint32][]uint64 // stream → sequence numbers in arrival order
		expect map[uint32]uint64
		want   Accounting
	}{
		{"perfect", map[uint32][]uint64{0: {0, 1, 2, 3}, 1: {0, 1}}, map[uint32]uint64{0: 4, 1: 2},
			Accounting{Expected: 6, Unique: 6}},
		{"lost middle and tail", map[uint32][]uint64{0: {0, 2}}, map[uint32]uint64{0: 5},
			Accounting{Expected: 5, Unique: 2, Lost: 3}},
		{"stream never heard", map[uint32][]uint64{0: {0}}, map[uint32]uint64{0: 1, 7: 3},
			Accounting{Expected: 4, Unique: 1, Lost: 3}},
		{"duplicate in order", map[uint32][]uint64{0: {0, 1, 1, 2}}, map[uint32]uint64{0: 3},
			Accounting{Expected: 3, Unique: 3, Duplicated: 1}},
		{"duplicate late", map[uint32][]uint64{0: {0, 1, 2, 0, 0}}, map[uint32]uint64{0: 3},
			Accounting{Expected: 3, Unique: 3, Duplicated: 2}},
		{"out of order", map[uint32][]uint64{0: {0, 2, 1, 3}}, map[uint32]uint64{0: 4},
			Accounting{Expected: 4, Unique: 4, OutOfOrder: 1}},
		{"reversed", map[uint32][]uint64{0: {3, 2, 1, 0}}, map[uint32]uint64{0: 4},
			Accounting{Expected: 4, Unique: 4, OutOfOrder: 3}},
		{"never sent seq", map[uint32][]uint64{0: {0, 1, 5}}, map[uint32]uint64{0: 2},
			Accounting{Expected: 2, Unique: 2, Unexpected: 1}},
		{"foreign stream", map[uint32][]uint64{0: {0}, 9: {0, 1}}, map[uint32]uint64{0: 1},
			Accounting{Expected: 1, Unique: 1, Unexpected: 2}},
		{"everything at once", map[uint32][]uint64{0: {1, 0, 1, 4, 200}}, map[uint32]uint64{0: 6},
			Accounting{Expected: 6, Unique: 3, Lost: 3, Duplicated: 1, OutOfOrder: 1, Unexpected: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tracks := map[uint32]*seqTrack{}
			for s, seqs := range c.got {
				tr := newSeqTrack()
				for _, q := range seqs {
					tr.add(q)
				}
				tracks[s] = tr
			}
			if got := account(tracks, c.expect); got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	runs := []RunResult{{Run: 1, DeliveriesPerSec: 5}, {Run: 2, DeliveriesPerSec: 1}, {Run: 3, DeliveriesPerSec: 3}}
	if m := median("fanout", runs); m.Run != 3 {
		t.Fatalf("median run %d, want 3", m.Run)
	}
}
