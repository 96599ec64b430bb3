package kafka

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// worker delivers the records of one assigned partition, in order. The poll loop queues
// records; past max_in_flight queued it pauses the partition's fetching, and the worker
// resumes it when it takes the queue.
type worker struct {
	c         *Connector
	cl        *kgo.Client
	topic     string
	partition int32

	ctx    context.Context // the sends': cancelled when a stop's grace is over
	cancel context.CancelFunc
	stop   chan struct{} // closed: finish the record in flight, then return
	once   sync.Once
	done   chan struct{}
	wake   chan struct{} // a push made the queue non-empty

	mu      sync.Mutex // guards queue, paused and stopped
	queue   []*kgo.Record
	paused  bool
	stopped bool // no more pauses: a revoke resumes the partition after stopping its worker

	next atomic.Int64 // offset of the next record to send; -1 before the first
	hw   atomic.Int64 // the partition's high watermark at the last fetch
}

func newWorker(c *Connector, cl *kgo.Client, topic string, partition int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{c: c, cl: cl, topic: topic, partition: partition, ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	w.next.Store(-1)
	w.hw.Store(-1)
	return w
}

// push queues records of a fetch (the poll loop's goroutine).
func (w *worker) push(recs []*kgo.Record, hw int64) {
	w.hw.Store(hw)
	if len(recs) == 0 {
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, recs...)
	if !w.paused && !w.stopped && len(w.queue) >= w.c.cfg.MaxInFlight {
		w.paused = true
		w.cl.PauseFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the queued records and resumes a paused partition.
func (w *worker) take() []*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	if w.paused {
		w.paused = false
		w.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
	return q
}

func (w *worker) stopAfterRecord() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.once.Do(func() { close(w.stop) })
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	if w.c.cfg.OrderByTarget {
		w.runLanes()
		return
	}
	d, m := w.c.deliver, w.c.metrics
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		recs := w.take()
		placed := make([]connector.Placed, 0, len(recs))
		kept := recs[:0]
		next := w.next.Load()
		for _, r := range recs {
			if next >= 0 && r.Offset < next {
				continue // fetched again after a revoke and reassignment: already sent
			}
			cr := record(r)
			s, err := d.Place(cr)
			placed = append(placed, connector.Placed{Record: cr, Send: s, Err: err})
			kept = append(kept, r)
		}
		// Runs of records to one target are sent with all of them in flight (one fsync for
		// many); the runs go one after the other, so the partition's order holds.
		for i := 0; i < len(placed); {
			select {
			case <-w.stop:
				return
			default:
			}
			n := connector.RunLength(placed[i:])
			done, err := d.DeliverRun(w.ctx, placed[i:i+n])
			if err != nil {
				return // stopped while the send was refused: not marked, so not committed
			}
			last := kept[i+done-1]
			w.next.Store(last.Offset + 1)
			w.cl.MarkCommitRecords(last)
			m.delivered(w.c.cfg.Name, done)
			i += done
		}
	}
}

func record(r *kgo.Record) *connector.Record {
	out := new(connector.Record)
	recordInto(out, r)
	return out
}

// recordInto fills out with r.
func recordInto(out *connector.Record, r *kgo.Record) {
	*out = connector.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		out.Headers = make([]connector.Header, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = connector.Header{Key: h.Key, Value: h.Value}
		}
	}
}

// lag is how many records of the partition are not sent yet, as of the last fetch.
func (w *worker) lag() int64 {
	hw, next := w.hw.Load(), w.next.Load()
	if next < 0 {
		w.mu.Lock()
		if len(w.queue) > 0 {
			next = w.queue[0].Offset
		}
		w.mu.Unlock()
	}
	if hw < 0 || next < 0 || hw <= next {
		return 0
	}
	return hw - next
}

func (w *worker) status() PartitionStatus {
	w.mu.Lock()
	queued, paused := len(w.queue), w.paused
	w.mu.Unlock()
	return PartitionStatus{Topic: w.topic, Partition: w.partition, NextOffset: w.next.Load(), HighWatermark: w.hw.Load(),
		Lag: w.lag(), Queued: queued, Paused: paused}
}

// Lanes of a partition whose records keep their order per target only (OrderByTarget): a
// record goes to the lane of its target, so records to one target are sent one after the
// other in partition order while records to other targets are sent meanwhile.
const (
	lanes     = 32
	laneDepth = connector.MaxRun
)

type laneItem struct {
	rec  *connector.Record
	send connector.Send
	err  error // the placement's: a poison record
	slot *slot
}

func (w *worker) runLanes() {
	d := w.c.deliver
	var tr tracker
	chans := make([]chan laneItem, lanes)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan laneItem, laneDepth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.lane(chans[i], &tr)
		}()
	}
	defer func() {
		for _, ch := range chans {
			close(ch)
		}
		wg.Wait()
	}()
	dispatched := int64(-1)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		recs := w.take()
		block := make([]connector.Record, len(recs)) // one allocation for the fetch's records
		for i, r := range recs {
			if dispatched >= 0 && r.Offset < dispatched {
				continue // fetched again after a revoke and reassignment: already sent
			}
			cr := &block[i]
			recordInto(cr, r)
			s, err := d.Place(cr)
			lane := 0
			if err == nil {
				lane = int(s.TargetHash() % lanes)
			}
			it := laneItem{rec: cr, send: s, err: err, slot: tr.add(r)}
			select {
			case chans[lane] <- it:
			case <-w.stop:
				return
			}
			dispatched = r.Offset + 1
		}
	}
}

// pipelineDepth bounds the runs a lane keeps in flight. A lane starts a run's sends (for a
// history group: appends its records) while the runs before it wait for their durability (the
// history's fsync) and are broadcast, so that a record reaching the lane meanwhile is appended
// at once and shares the next fsync, rather than waiting for the runs before it to finish
// first and then for an fsync of its own.
const pipelineDepth = 4

// laneRun is a run a lane started: its items, in order; started says what StartRun did.
type laneRun struct {
	items   []laneItem
	started *connector.StartedRun
}

// laneResult is a run the lane's finisher finished: done of its items, from the first, are
// done (FinishRun).
type laneResult struct {
	run  *laneRun
	done int
}

// lane delivers the items of one lane: runs of items to one target with all of them in flight
// (StartRun), up to pipelineDepth runs at once, finished in the order they were started by the
// lane's finisher goroutine (FinishRun); each item is marked as its run completes.
//
// Order per target: a target's items are started in the lane's order, and each run after the
// previous one, so their records (and broadcasts: the history's sequencer) keep that order.
// When a run comes back short (a send refused) or starts short, the lane starts nothing more
// until every run in flight came back; the items not done (those of the short run from the
// first refused one, and every item of the runs after it, whatever their result: they go
// again, answered from the idempotency index if they were sent) go back before the pending
// ones, in order, and a run none of whose items went through has its first item delivered
// alone with DeliverPlaced's retries and poison handling, as DeliverRun does.
func (w *worker) lane(ch <-chan laneItem, tr *tracker) {
	d := w.c.deliver
	toFinish := make(chan *laneRun, pipelineDepth)
	// Never full: at most pipelineDepth runs are in flight.
	results := make(chan laneResult, pipelineDepth)
	// The lane's finisher: it stops once toFinish is closed and drained.
	go func() {
		defer close(results)
		for r := range toFinish {
			results <- laneResult{run: r, done: d.FinishRun(r.started)}
		}
	}()
	var (
		pending  []laneItem // not started, in the lane's order
		inflight int        // runs started and not yet come back
		hold     bool       // a run started or came back short: start nothing until inflight is 0
		failed   bool       // a run came back short: the runs after it go again
		zeroDone bool       // the short run did none of its items
		again    []laneItem // items of runs that came back short, in start order
	)
	mark := func(items []laneItem) {
		for _, it := range items {
			tr.complete(it.slot, func(last *kgo.Record) {
				w.next.Store(last.Offset + 1)
				w.cl.MarkCommitRecords(last)
			})
		}
		if len(items) > 0 {
			w.c.metrics.delivered(w.c.cfg.Name, len(items))
		}
	}
	finished := func(res laneResult) {
		inflight--
		items := res.run.items
		switch {
		case failed:
			again = append(again, items...)
		default:
			mark(items[:res.done])
			if res.done < len(items) {
				failed, hold, zeroDone = true, true, res.done == 0
				again = append(again, items[res.done:]...)
			}
		}
	}
	defer func() {
		// Stopping: the runs in flight are finished (a started send must be) and marked;
		// what is pending is not sent, so not marked.
		close(toFinish)
		for res := range results {
			finished(res)
		}
	}()
	var placed []connector.Placed
	for {
		if hold && inflight == 0 {
			pending = append(again, pending...)
			again = nil
			hold, failed = false, false
			if zeroDone && len(pending) > 0 {
				zeroDone = false
				it := pending[0]
				if err := d.DeliverPlaced(w.ctx, it.rec, it.send, it.err); err != nil {
					pending = pending[:0] // stopped while refused: not marked
				} else {
					mark(pending[:1])
					pending = pending[1:]
				}
			}
		}
		select {
		case <-w.stop: // stopping: what is queued is not sent, so not marked
			pending, again = pending[:0], nil
		default:
		}
		// Start runs while the pipeline has room.
		for !hold && inflight < pipelineDepth && len(pending) > 0 {
			// The first pending item leads a run, which the pending items to its target join, in
			// order: a lane holds several targets, whose records need no order between them.
			run := &laneRun{items: make([]laneItem, 0, min(len(pending), connector.MaxRun))}
			lead := pending[0]
			run.items = append(run.items, lead)
			rest := pending[:0]
			cut := false // an item of the lead's target that must not join: it and the target's later items stay
			for _, it := range pending[1:] {
				join := !cut && lead.err == nil && it.err == nil && len(run.items) < connector.MaxRun &&
					it.send.SameTarget(lead.send)
				if join && !it.send.OwnKey {
					join, cut = false, true // it goes after this run, and its target's later items after it
				}
				if join {
					run.items = append(run.items, it)
				} else {
					rest = append(rest, it)
				}
			}
			clear(pending[len(rest):])
			pending = rest
			placed = placed[:0]
			for _, it := range run.items {
				placed = append(placed, connector.Placed{Record: it.rec, Send: it.send, Err: it.err})
			}
			run.started = d.StartRun(w.ctx, placed)
			if run.started.Started() < len(run.items) {
				hold = true // the rest of it goes again once the runs in flight came back
			}
			inflight++
			toFinish <- run
		}
		if inflight == 0 && len(pending) == 0 {
			it, ok := <-ch
			if !ok {
				return
			}
			pending = append(pending, it)
		} else {
			in := ch
			if len(pending) >= connector.MaxRun || hold || inflight == pipelineDepth && len(pending) > 0 {
				in = nil // enough to start once a run comes back
			}
			select {
			case it, ok := <-in:
				if !ok {
					return // closed at a stop: nothing more is sent
				}
				pending = append(pending, it)
			case res := <-results:
				finished(res)
			}
		}
	gather:
		for len(pending) < connector.MaxRun {
			select {
			case it, ok := <-ch:
				if !ok {
					return // closed at a stop: nothing more is sent
				}
				pending = append(pending, it)
			default:
				break gather
			}
		}
	}
}

// slot is one dispatched record of a partition.
type slot struct {
	rec  *kgo.Record
	done bool
}

// tracker marks a partition's records for commit in offset order while their sends complete
// in any order: a record is marked only once it and every record before it were sent.
type tracker struct {
	mu    sync.Mutex
	slots []*slot // dispatched and not yet marked, in offset order
	free  []slot  // slots made in blocks rather than one allocation per record
}

// slotBlock is how many slots a tracker allocates at once.
const slotBlock = 256

func (t *tracker) add(r *kgo.Record) *slot {
	t.mu.Lock()
	if len(t.free) == 0 {
		t.free = make([]slot, slotBlock)
	}
	s := &t.free[0]
	t.free = t.free[1:]
	s.rec = r
	t.slots = append(t.slots, s)
	t.mu.Unlock()
	return s
}

// complete records s as sent and calls mark with the last record of the sent prefix, if it
// grew (under the tracker's lock, so marks never go back).
func (t *tracker) complete(s *slot, mark func(last *kgo.Record)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.done = true
	var last *kgo.Record
	n := 0
	for n < len(t.slots) && t.slots[n].done {
		last = t.slots[n].rec
		n++
	}
	if n == 0 {
		return
	}
	for _, sl := range t.slots[:n] {
		sl.rec = nil // its block may outlive it: do not keep the record
	}
	clear(t.slots[:n])
	t.slots = t.slots[n:]
	mark(last)
}
