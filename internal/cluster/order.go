package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

// Ordering of requests and ops. A node delivers ops and serves requests on
// two subscriptions, which NATS does not order between them; it does
// deliver one publisher's messages on one subscription in the order they
// were published, on all of its ops subscriptions alike (they share one
// inbox, see inbox.go). So before a request, its node publishes a marker on
// sb.<ns>.ops.~marker, which every node receives (the next of its seqs),
// and the request carries the marker's seq; the node that runs the request first waits until its ops subscription delivered that marker,
// hence every op the asking node published before it: per origin node, ops
// and requests run on every node in the order the origin issued them. The
// wait is bounded (half the request timeout): a marker lost on the way
// (NATS down, a slow consumer) never comes, and the request then runs
// anyway, counted as errors_total{kind="order_wait"}. Sends publish no
// marker: their path is unchanged.

// originSeq is the last marker a node delivered of one origin.
type originSeq struct {
	seq  uint64
	wake chan struct{} // closed when seq moves; nil: nobody waits
}

// mark publishes the next marker of this node and returns its seq; 0 (wait
// for nothing) when NATS did not take it.
func (b *Broker) mark() uint64 {
	b.markMu.Lock()
	defer b.markMu.Unlock()
	seq := b.seq + 1
	if err := b.publish(b.prefix+"~marker", encodeMarker(nil, b.c.cfg.NodeID, seq)); err != nil {
		return 0
	}
	b.seq = seq
	return seq
}

// receiveMarker records a marker and wakes who waits for it.
func (b *Broker) receiveMarker(m *nats.Msg) {
	origin, seq, err := decodeMarker(m.Data)
	if err != nil {
		b.decErrs.Inc()
		b.c.log.Error("dropped a marker from NATS", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		return
	}
	b.ordMu.Lock()
	defer b.ordMu.Unlock()
	o := b.originLocked(origin)
	if o == nil {
		return
	}
	// The last one, not the highest: one origin's markers arrive in seq
	// order, and a restarted origin whose clock went back starts below.
	o.seq = seq
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}

// originLocked returns origin's record, made if need be. Past maxNodes
// records it first forgets the nodes no longer live (in the heartbeat view)
// that nobody waits for, as nodes come and go with new ids; nil if that
// frees none.
func (b *Broker) originLocked(origin string) *originSeq {
	o := b.delivered[origin]
	if o != nil {
		return o
	}
	if len(b.delivered) >= maxNodes {
		live := b.c.liveNodes()
		for id, r := range b.delivered {
			if r.wake == nil && !slices.Contains(live, id) {
				delete(b.delivered, id)
			}
		}
		if len(b.delivered) >= maxNodes {
			return nil
		}
	}
	o = &originSeq{}
	b.delivered[origin] = o
	return o
}

// orderWait bounds how long a request waits for its origin's marker.
func (b *Broker) orderWait() time.Duration { return b.c.cfg.RequestTimeout / 2 }

// awaitMarker waits until origin's marker seq (0: none) was delivered here,
// at most orderWait or until ctx is done.
func (b *Broker) awaitMarker(ctx context.Context, origin string, seq uint64) {
	if seq == 0 {
		return
	}
	var timeout <-chan time.Time
	for {
		b.ordMu.Lock()
		o := b.originLocked(origin)
		if o == nil || o.seq >= seq {
			b.ordMu.Unlock()
			return
		}
		if o.wake == nil {
			o.wake = make(chan struct{})
		}
		wake := o.wake
		b.ordMu.Unlock()
		if timeout == nil {
			t := time.NewTimer(b.orderWait())
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-wake:
		case <-timeout:
			b.ordWaits.Inc()
			b.c.log.Warn("a request waited for the ops its node published before it and runs without them",
				"origin", origin, "seq", seq, "waited", b.orderWait())
			return
		case <-ctx.Done():
			return
		}
	}
}

// Settle returns at once: core calls it before it runs a request on this
// node's own conns, to wait until the ops this node published before were
// delivered here, and Publish delivers them here before it returns.
func (b *Broker) Settle(context.Context) {}
