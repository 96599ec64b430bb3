package upstream

import (
	"container/heap"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// chain holds the queued events of one connection, oldest first. Only the head is ever
// in flight, which keeps per-connection order.
type chain struct {
	key     string
	jobs    []*job
	running bool      // a worker holds the head
	queued  bool      // in ready or delayed
	due     time.Time // when delayed: time of the head's retry
	index   int       // in delayed
}

// queue is the asynchronous event queue: a FIFO of connections with an event ready
// (round-robin, one event per turn) and a heap of connections waiting for a retry.
type queue struct {
	limit  int
	queued prometheus.Gauge
	wake   chan struct{} // one token: an idle worker should look again

	// mu guards the fields below.
	mu        sync.Mutex
	chains    map[string]*chain
	ready     []*chain
	readyHead int
	delayed   delayHeap
	total     int  // jobs in chains
	full      bool // the last push was dropped for the limit
	closing   bool
	drained   chan struct{} // closed when closing and total is 0
}

func (q *queue) init(limit int, queued prometheus.Gauge) {
	q.limit = limit
	q.queued = queued
	q.wake = make(chan struct{}, 1)
	q.chains = make(map[string]*chain)
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push appends j to the chain of key. It returns the drop reason, or "" when queued, and
// whether this drop starts an overflow episode.
func (q *queue) push(key string, j *job) (drop string, startsOverflow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return dropClosed, false
	}
	if q.total >= q.limit {
		starts := !q.full
		q.full = true
		return dropQueueFull, starts
	}
	q.full = false
	ch := q.chains[key]
	if ch == nil {
		ch = &chain{key: key, index: -1}
		q.chains[key] = ch
	}
	ch.jobs = append(ch.jobs, j)
	q.total++
	q.queued.Inc()
	if !ch.running && !ch.queued {
		q.pushReady(ch)
	}
	return "", false
}

// next moves due retries to the ready FIFO and takes its first chain, returning the job
// to attempt. With nothing ready it returns how long until the next retry is due (0:
// none pending).
func (q *queue) next(now time.Time) (*chain, *job, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.delayed) > 0 && !q.delayed[0].due.After(now) {
		ch := heap.Pop(&q.delayed).(*chain)
		ch.queued = false
		q.pushReady(ch)
	}
	if q.readyHead < len(q.ready) {
		ch := q.ready[q.readyHead]
		q.ready[q.readyHead] = nil
		q.readyHead++
		if q.readyHead == len(q.ready) {
			q.ready, q.readyHead = q.ready[:0], 0
		} else {
			q.signal() // more ready: wake another worker
		}
		ch.queued, ch.running = false, true
		return ch, ch.jobs[0], 0
	}
	if len(q.delayed) > 0 {
		return nil, nil, q.delayed[0].due.Sub(now)
	}
	return nil, nil, 0
}

// pushReady appends ch to the ready FIFO and wakes a worker.
func (q *queue) pushReady(ch *chain) {
	if q.readyHead > 0 && len(q.ready) == cap(q.ready) {
		// Reuse the consumed front instead of growing.
		n := copy(q.ready, q.ready[q.readyHead:])
		clear(q.ready[n:])
		q.ready, q.readyHead = q.ready[:n], 0
	}
	q.ready = append(q.ready, ch)
	ch.queued = true
	q.signal()
}

// finish removes the head job of ch (delivered or dropped) and requeues ch if it has more.
func (q *queue) finish(ch *chain) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch.running = false
	ch.jobs[0] = nil
	ch.jobs = ch.jobs[1:]
	q.total--
	q.queued.Dec()
	if len(ch.jobs) == 0 {
		delete(q.chains, ch.key)
		ch.jobs = nil
	} else {
		q.pushReady(ch)
	}
	if q.closing && q.total == 0 {
		q.closeDrained()
	}
}

// retry schedules the head job of ch again at due.
func (q *queue) retry(ch *chain, due time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ch.running = false
	ch.due = due
	ch.queued = true
	heap.Push(&q.delayed, ch)
	if ch.index == 0 {
		q.signal() // earlier than any timer a worker sleeps on
	}
}

// park releases ch without settling its head (the Client is stopping).
func (q *queue) park(ch *chain) {
	q.mu.Lock()
	ch.running = false
	q.mu.Unlock()
}

// close stops taking jobs and returns a channel closed once none is left.
func (q *queue) close() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closing = true
	q.drained = make(chan struct{})
	if q.total == 0 {
		q.closeDrained()
	}
	return q.drained
}

func (q *queue) closeDrained() {
	select {
	case <-q.drained:
	default:
		close(q.drained)
	}
}

// discard empties the queue and returns how many jobs of each event kind it held.
func (q *queue) discard() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := make(map[string]int)
	for _, ch := range q.chains {
		for _, j := range ch.jobs {
			n[j.kind]++
		}
	}
	q.queued.Sub(float64(q.total))
	clear(q.chains)
	q.ready, q.readyHead, q.delayed, q.total = nil, 0, nil, 0
	return n
}

// delayHeap orders chains waiting for a retry by due time.
type delayHeap []*chain

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *delayHeap) Push(x any) {
	ch := x.(*chain)
	ch.index = len(*h)
	*h = append(*h, ch)
}

func (h *delayHeap) Pop() any {
	old := *h
	n := len(old)
	ch := old[n-1]
	old[n-1] = nil
	ch.index = -1
	*h = old[:n-1]
	return ch
}
