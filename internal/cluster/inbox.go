package cluster

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// The inbox is how a broker receives: every subscription of its ops (the
// hub-wide one, the node's own, one per group with local members) feeds one
// channel, and one goroutine delivers from it. nats.go's reader puts the
// messages of all of a connection's subscriptions on their channels in the
// order they arrived on the socket, and NATS sends one publisher's messages
// to one subscriber connection in the order they were published, whatever
// their subjects (on one server, and over the one route connection that
// carries an account between two servers). So the node delivers one
// origin's ops and markers in the order the origin published them, though
// they travel on different subjects (see order.go).
//
// nats.go drops a message whose channel is full, so a pump moves messages
// from the channel to a queue bounded in messages and bytes (nats.go's
// defaults for a subscription); past the bound a message is dropped and
// counted as errors_total{kind="slow_consumer"}, as NATS does. The memory
// held is at most that queue, the batch being delivered (one queue's worth)
// and the channel's inboxChan messages the pump has not taken yet.
const (
	inboxChan     = 8192
	inboxMaxMsgs  = 512 * 1024
	inboxMaxBytes = 64 << 20
)

type inbox struct {
	ch      chan *nats.Msg
	deliver func(*nats.Msg)
	// dropped is called for every message the queue has no room for;
	// first is true for the first one since the queue was last empty.
	dropped func(first bool)

	mu       sync.Mutex
	q        []*nats.Msg
	bytes    int
	dropping bool          // a message was dropped since the queue was last empty
	wake     chan struct{} // cap 1: the queue is not empty
	stop     chan struct{} // closed by close
	pumped   chan struct{} // closed by the pump once it stopped
	done     chan struct{} // closed by the deliverer once it stopped
	stopped  sync.Once
}

// newInbox starts the pump and the deliverer; close stops them.
func newInbox(deliver func(*nats.Msg), dropped func(first bool)) *inbox {
	in := &inbox{ch: make(chan *nats.Msg, inboxChan), deliver: deliver, dropped: dropped,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), pumped: make(chan struct{}), done: make(chan struct{})}
	go in.pump()
	go in.run()
	return in
}

func msgSize(m *nats.Msg) int { return len(m.Data) + len(m.Subject) }

func (in *inbox) pump() {
	defer close(in.pumped)
	for {
		select {
		case m := <-in.ch:
			in.push(m)
		case <-in.stop:
			for {
				select {
				case m := <-in.ch:
					in.push(m)
				default:
					return
				}
			}
		}
	}
}

func (in *inbox) push(m *nats.Msg) {
	in.mu.Lock()
	if len(in.q) >= inboxMaxMsgs || in.bytes+msgSize(m) > inboxMaxBytes {
		first := !in.dropping
		in.dropping = true
		in.mu.Unlock()
		in.dropped(first)
		return
	}
	in.q = append(in.q, m)
	in.bytes += msgSize(m)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// run delivers the queue in order until close, then what is left.
func (in *inbox) run() {
	defer close(in.done)
	var batch []*nats.Msg
	for {
		select {
		case <-in.wake:
		case <-in.pumped:
			in.drain(batch)
			return
		}
		batch = in.drain(batch)
	}
}

// drain delivers what is queued and returns the emptied batch to reuse.
func (in *inbox) drain(batch []*nats.Msg) []*nats.Msg {
	for {
		in.mu.Lock()
		batch, in.q = in.q, batch[:0]
		in.bytes = 0
		if len(batch) == 0 {
			in.dropping = false
		}
		in.mu.Unlock()
		if len(batch) == 0 {
			return batch
		}
		for i, m := range batch {
			in.deliver(m)
			batch[i] = nil
		}
	}
}

// close stops the pump and the deliverer, once what was received is
// delivered.
func (in *inbox) close() {
	in.stopped.Do(func() { close(in.stop) })
	<-in.done
}
