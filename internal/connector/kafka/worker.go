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
	m := w.c.metrics
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		for _, r := range w.take() {
			select {
			case <-w.stop:
				return
			default:
			}
			if next := w.next.Load(); next >= 0 && r.Offset < next {
				continue // fetched again after a revoke and reassignment: already sent
			}
			if err := w.c.deliver.Deliver(w.ctx, record(r)); err != nil {
				return // stopped while the send was refused: not marked, so not committed
			}
			w.next.Store(r.Offset + 1)
			w.cl.MarkCommitRecords(r)
			m.delivered(w.c.cfg.Name)
		}
	}
}

func record(r *kgo.Record) *connector.Record {
	out := &connector.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		out.Headers = make([]connector.Header, len(r.Headers))
		for i, h := range r.Headers {
			out.Headers[i] = connector.Header{Key: h.Key, Value: h.Value}
		}
	}
	return out
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
