package core

import (
	"sync"
	"time"
)

// Item is one queued outbound message: an optional per-conn head (for
// sequenced protocols, built by Codec.AppendHead from Seq) followed by the
// shared Body.
//
// The two bools are last, side by side, so that the item stays 56 bytes
// (a queued message's cost per recipient) with Accepted.
type Item struct {
	Body    []byte
	Seq     uint64 // 0: not sequenced
	Expires int64  // unix nanoseconds; 0: never
	// Accepted is the message's Message.Accepted; 0 for control frames and
	// replays, which are not part of the delivery latency.
	Accepted int64
	Binary   bool
	// reply marks a sequenced answer to one of the client's requests
	// (Conn.DeliverReply), of which the replay buffer keeps a bounded number.
	reply bool
}

// Link is the socket side of a Conn, provided by the transport. A Conn has at
// most one Link at a time; a reliable session may have none for a while.
type Link interface {
	// Wake tells the writer that the conn's queue is not empty. It must not
	// block.
	Wake()
	// Close writes what is queued, then closes the socket with code and
	// reason. It must not block and may be called more than once.
	Close(code int, reason string)
}

// Source is what a Link's writer takes queued items from: a *Conn, or a dialect's few fixed
// frames before its conn exists. It is declared here, beside Link, for the three transports that
// drain one (websocket, sse, longpoll).
type Source interface {
	// Drain appends the queued items to dst and empties the queue; l is the Link draining.
	Drain(l Link, dst []Item) []Item
	// AppendHead appends the per-message head of a sequenced protocol for seq;
	// body is the item's Body that follows it.
	AppendHead(dst []byte, seq uint64, body []byte) []byte
}

var _ Source = (*Conn)(nil)

// outbox is the byte-bounded queue of a conn plus, for sequenced protocols,
// the buffer of data messages the client has not acknowledged yet.
type outbox struct {
	mu       sync.Mutex
	items    []Item
	bytes    int
	maxBytes int
	link     Link
	ended    bool

	// Sequenced protocols only.
	seq            uint64
	unacked        []Item
	unackedBytes   int
	unackedReplies int // items of unacked with reply set
}

// push appends it. It reports ErrSlowConsumer or ErrReplayOverflow when a
// bound is crossed; the caller then ends the conn. For a reply (it.reply)
// of a sequenced conn, at most keepReplies replies stay in the replay
// buffer: the oldest beyond that is dropped from it.
func (o *outbox) push(it Item, sequenced bool, lim *Limits, keepReplies int) (Link, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return nil, nil
	}
	if sequenced {
		o.seq++
		it.Seq = o.seq
		kept := it
		kept.Accepted = 0 // a replay is not a delivery to measure
		o.unacked = append(o.unacked, kept)
		o.unackedBytes += len(it.Body)
		if it.reply {
			o.unackedReplies++
			if o.unackedReplies > keepReplies {
				o.dropOldestReply()
			}
		}
		if len(o.unacked) > lim.ReplayMessages || o.unackedBytes > lim.ReplayBytes {
			return nil, ErrReplayOverflow
		}
		if o.link == nil {
			return nil, nil // kept for replay when the client comes back
		}
	}
	if o.link == nil {
		return nil, nil
	}
	o.items = append(o.items, it)
	o.bytes += len(it.Body)
	if o.bytes > o.maxBytes {
		return nil, ErrSlowConsumer
	}
	if len(o.items) == 1 {
		return o.link, nil
	}
	return nil, nil
}

// pushControl queues a frame that is not a data message (ack, pong, system):
// it is never sequenced nor replayed.
func (o *outbox) pushControl(f Frame) (Link, error) {
	return o.push(Item{Body: f.Data, Binary: f.Binary}, false, nil, 0)
}

// dropOldestReply removes the oldest reply from the replay buffer; o.mu is
// held.
func (o *outbox) dropOldestReply() {
	for i := range o.unacked {
		if o.unacked[i].reply {
			o.unackedBytes -= len(o.unacked[i].Body)
			o.unackedReplies--
			n := len(o.unacked) - 1
			copy(o.unacked[i:], o.unacked[i+1:])
			o.unacked[n] = Item{} // no stale reference past the end
			o.unacked = o.unacked[:n]
			return
		}
	}
}

// drain moves every queued item to dst when l is the current link; a link
// that was replaced gets nothing (its successor owns the queue).
func (o *outbox) drain(l Link, dst []Item) []Item {
	o.mu.Lock()
	if o.link != l {
		o.mu.Unlock()
		return dst
	}
	now := int64(0)
	for _, it := range o.items {
		if it.Expires != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if it.Expires < now {
				continue // its messageTtlSeconds ran out while queued
			}
		}
		dst = append(dst, it)
	}
	clear(o.items)
	o.items = o.items[:0]
	o.bytes = 0
	o.mu.Unlock()
	return dst
}

// ack drops buffered data messages up to and including seq.
func (o *outbox) ack(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(o.unacked) && o.unacked[n].Seq <= seq {
		o.unackedBytes -= len(o.unacked[n].Body)
		if o.unacked[n].reply {
			o.unackedReplies--
		}
		n++
	}
	if n > 0 {
		k := copy(o.unacked, o.unacked[n:])
		clear(o.unacked[k:])
		o.unacked = o.unacked[:k]
	}
}

// attach makes l the conn's link; for sequenced conns the queue restarts with
// every unacknowledged data message, in order, preceded by the codec's resume
// frame when it has one. It returns the previous link, and false when the
// outbox has ended.
func (o *outbox) attach(l Link, sequenced bool, r Resumer) (prev Link, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended {
		return nil, false
	}
	prev, o.link = o.link, l
	clear(o.items)
	o.items, o.bytes = o.items[:0], 0
	if sequenced {
		if r != nil {
			next := o.seq + 1
			if len(o.unacked) > 0 {
				next = o.unacked[0].Seq
			}
			f := r.ResumeFrame(next)
			o.items = append(o.items, Item{Body: f.Data, Binary: f.Binary})
			o.bytes += len(f.Data)
		}
		o.items = append(o.items, o.unacked...) // drain skips the expired ones
		o.bytes += o.unackedBytes
	}
	return prev, true
}

// detach drops l if it is still the conn's link; it reports whether it was.
func (o *outbox) detach(l Link) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.link != l {
		return false
	}
	o.link = nil
	clear(o.items)
	o.items, o.bytes = o.items[:0], 0
	return true
}

// end stops the outbox: later pushes are dropped. It returns the link, if any.
func (o *outbox) end(keepQueued bool) Link {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = true
	if !keepQueued {
		clear(o.items)
		o.items, o.bytes = o.items[:0], 0
	}
	clear(o.unacked)
	o.unacked, o.unackedBytes, o.unackedReplies = nil, 0, 0
	return o.link
}
