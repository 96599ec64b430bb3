package bench

// seqTrack accounts for the messages of one stream seen by one receiver: which sequence
// numbers arrived (a bitset, so duplicates are found even out of order), how many arrived
// twice, and how many arrived after a higher one.
type seqTrack struct {
	seen   []uint64
	max    int64 // highest sequence number seen; -1 before the first
	unique int64
	dup    int64
	ooo    int64
}

func newSeqTrack() *seqTrack { return &seqTrack{max: -1} }

// add records seq and reports whether it is new.
func (t *seqTrack) add(seq uint64) bool {
	w := int(seq / 64)
	if w >= len(t.seen) {
		n := max(2*len(t.seen), w+1, 4)
		s := make([]uint64, n)
		copy(s, t.seen)
		t.seen = s
	}
	bit := uint64(1) << (seq % 64)
	if t.seen[w]&bit != 0 {
		t.dup++
		return false
	}
	t.seen[w] |= bit
	t.unique++
	if int64(seq) < t.max {
		t.ooo++
	} else {
		t.max = int64(seq)
	}
	return true
}

// beyond counts distinct sequence numbers at or above n: messages that were never sent
// (n is how many the publisher says it sent: 0..n-1).
func (t *seqTrack) beyond(n uint64) int64 {
	var c int64
	for w := range t.seen {
		for b := 0; b < 64; b++ {
			if t.seen[w]&(1<<b) != 0 && uint64(w*64+b) >= n {
				c++
			}
		}
	}
	return c
}

// Accounting is the loss / duplicate / order verdict over some receivers and streams.
type Accounting struct {
	Expected   int64 `json:"expected"`   // deliveries that should have happened
	Unique     int64 `json:"unique"`     // distinct expected deliveries that happened
	Lost       int64 `json:"lost"`       // expected but never received
	Duplicated int64 `json:"duplicated"` // received more than once (each extra copy counts)
	OutOfOrder int64 `json:"outOfOrder"` // received after a higher sequence number of the same stream
	Unexpected int64 `json:"unexpected"` // received but never sent to this receiver
}

func (a *Accounting) add(b Accounting) {
	a.Expected += b.Expected
	a.Unique += b.Unique
	a.Lost += b.Lost
	a.Duplicated += b.Duplicated
	a.OutOfOrder += b.OutOfOrder
	a.Unexpected += b.Unexpected
}

// account compares what one receiver saw (tracks by stream) with what it should have seen
// (expect: stream → messages sent, numbered 0..n-1).
func account(tracks map[uint32]*seqTrack, expect map[uint32]uint64) Accounting {
	var a Accounting
	for s, n := range expect {
		a.Expected += int64(n)
		t := tracks[s]
		if t == nil {
			a.Lost += int64(n)
			continue
		}
		extra := t.beyond(n)
		got := t.unique - extra
		a.Unique += got
		a.Lost += int64(n) - got
		a.Unexpected += extra
	}
	for s, t := range tracks {
		a.Duplicated += t.dup
		a.OutOfOrder += t.ooo
		if _, ok := expect[s]; !ok {
			a.Unexpected += t.unique
		}
	}
	return a
}
