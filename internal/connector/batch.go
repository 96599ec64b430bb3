package connector

import "context"

// Order is what a record of a batch must follow (DeliverBatch).
type Order int

const (
	// OrderPartition: every earlier record of its partition (Record.Partition) in the batch,
	// poison ones included.
	OrderPartition Order = iota
	// OrderTarget: every earlier record to its target (Send.TargetKey); a poison record
	// follows nothing and holds nothing back.
	OrderTarget
)

// lane is the records one record must follow in a batch: equal lanes, one order.
type lane struct {
	partition int32
	target    string
}

// lane returns p's lane under o; false: p follows nothing (a poison record by target).
func (o Order) lane(p *Placed) (lane, bool) {
	if o == OrderPartition {
		return lane{partition: p.Record.Partition}, true
	}
	if p.Err != nil {
		return lane{}, false
	}
	return lane{target: p.Send.TargetKey()}, true
}

// lanes is a set of lanes held back; the zero value holds none.
type lanes struct {
	o    Order
	held map[lane]struct{}
}

func (l *lanes) hold(p *Placed) {
	if k, ok := l.o.lane(p); ok {
		if l.held == nil {
			l.held = map[lane]struct{}{}
		}
		l.held[k] = struct{}{}
	}
}

func (l *lanes) holds(p *Placed) bool {
	if l.held == nil {
		return false
	}
	k, ok := l.o.lane(p)
	if !ok {
		return false
	}
	_, held := l.held[k]
	return held
}

// DeliverBatch delivers a batch of records that a source holds at once (an outbox's locked
// rows), in the batch's order within each lane of o, and reports which are done (sent,
// replayed, or poison set aside): the source may commit those. Every run of the batch
// (RunLength) is started, in order, before the first is finished, so that the whole batch
// shares the history's fsyncs instead of each run waiting for one of its own; then the runs
// are finished in the order they were started.
//
// A record is done only if every record it must follow (o) is. After each pass every poison
// record that no longer follows a record not done is set aside (setAside); the records not
// done go again, in order, in another pass. A pass that delivered neither its first record
// nor a poison one is followed by its first record alone, with DeliverPlaced's retries: every
// pass delivers at least one record, until ctx ends. Records sent in a pass but held back
// behind a refused one go again too: for a history group that is a replay, answered from the
// idempotency index; for other targets a second delivery, as with DeliverRun.
//
// DeliverBatch runs on the caller's goroutine: a dead-letter function it calls may use what
// the caller holds (its transaction) without locking.
func (d *Deliverer) DeliverBatch(ctx context.Context, placed []Placed, o Order) []bool {
	done := make([]bool, len(placed))
	left := make([]int, len(placed)) // the records not done, in order
	for i := range left {
		left[i] = i
	}
	rest := make([]Placed, 0, len(placed))
	for len(left) > 0 && ctx.Err() == nil {
		rest = rest[:0]
		for _, i := range left {
			rest = append(rest, placed[i])
		}
		sent := d.pass(ctx, rest, o)
		firstDone := sent[0]
		held := lanes{o: o}
		next := left[:0] // rewrites left in place: next never passes j
		for j := range rest {
			i := left[j]
			if sent[j] && !held.holds(&rest[j]) {
				done[i] = true
				continue
			}
			next = append(next, i)
			held.hold(&rest[j])
		}
		left = next
		var aside int
		left, aside = d.setAside(ctx, placed, left, o, done)
		if len(left) == 0 || firstDone || aside > 0 || ctx.Err() != nil {
			continue
		}
		// The pass delivered neither its first record nor any poison one: its first record
		// alone, retried while it is refused.
		i := left[0]
		if err := d.DeliverPlaced(ctx, placed[i].Record, placed[i].Send, placed[i].Err); err != nil {
			break
		}
		done[i] = true
		left = left[1:]
	}
	return done
}

// setAside sets aside, in order, every poison record of left that follows no record of left
// (nothing by target; by partition, none of its partition is left before it) and marks it
// done. It returns the records still left and how many it set aside; it stops when ctx ends.
// Without it a batch would set aside one poison record per pass: with a poison record in
// each partition, a pass over the whole batch for each.
func (d *Deliverer) setAside(ctx context.Context, placed []Placed, left []int, o Order, done []bool) ([]int, int) {
	next := left[:0] // rewrites left in place: next never passes k
	var (
		waiting lanes // the lanes of the records left so far
		aside   int
	)
	waiting.o = o
	for k, i := range left {
		p := &placed[i]
		if p.Err == nil || waiting.holds(p) {
			next = append(next, i)
			waiting.hold(p)
			continue
		}
		if d.DeliverPlaced(ctx, p.Record, p.Send, p.Err) != nil {
			return append(next, left[k:]...), aside
		}
		done[i] = true
		aside++
	}
	return next, aside
}

// pass starts the runs of rest in order and then finishes them in order; sent[j] reports
// rest[j]'s send done (a run's records after a refused one are not). A record is not started
// when it is poison, its lane is held, or a record started earlier in the pass has its key (its
// Start would wait for a finish that comes only after it); nor when its start fails. Each of
// those holds its lane for the rest of the pass, and the pass goes on with the other lanes.
func (d *Deliverer) pass(ctx context.Context, rest []Placed, o Order) []bool {
	type startedAt struct {
		at  int
		run *StartedRun
	}
	var (
		started []startedAt
		keys    map[string]struct{} // the keys started in the pass, once a record may share one
		held    = lanes{o: o}
	)
	for i := 0; i < len(rest) && ctx.Err() == nil; {
		whole := RunLength(rest[i:])
		run := rest[i : i+whole]
		if keys == nil && !ownKeys(run) {
			keys = make(map[string]struct{}, len(rest))
			for _, p := range rest[:i] {
				keys[p.Send.Key] = struct{}{}
			}
		}
		n := 0
		for n < len(run) && run[n].Err == nil && !held.holds(&run[n]) {
			if _, dup := keys[run[n].Send.Key]; dup && run[n].Send.Key != "" {
				break
			}
			n++
		}
		if n > 0 {
			s := d.StartRun(ctx, run[:n])
			started = append(started, startedAt{i, s})
			n = s.Started()
			if keys != nil {
				for _, p := range run[:n] {
					keys[p.Send.Key] = struct{}{}
				}
			}
		}
		for j := n; j < len(run); j++ {
			held.hold(&run[j])
		}
		i += whole
	}
	sent := make([]bool, len(rest))
	for _, s := range started {
		n := d.FinishRun(s.run)
		for j := range n {
			sent[s.at+j] = true
		}
	}
	return sent
}

// ownKeys reports whether every record of run is keyed by its own place in its source (no
// other record carries its key) or is poison.
func ownKeys(run []Placed) bool {
	for _, p := range run {
		if p.Err == nil && !p.Send.OwnKey {
			return false
		}
	}
	return true
}
