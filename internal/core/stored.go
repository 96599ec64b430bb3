package core

import (
	"context"
	"fmt"
	"strings"
)

// DeliveringHistory is a History that delivers the messages it stores: a
// stream shared by the nodes of a cluster, from which each node delivers
// every stored message to its own members, in offset order. With one, core
// takes no sequencer turn and publishes nothing on the broker for a durable
// send: sendDurable calls Store, and the history hands each stored message
// to the node's DeliverStored (this node's sends and the other nodes'
// alike).
//
// Its Top must return only once this node delivered (DeliverStored
// returned) the message at the offset it returns, so that a recovering
// join that replays up to it gets none of those messages live again.
type DeliveringHistory interface {
	History
	// Attach registers the node that receives the stored messages; NewNode
	// calls it once.
	Attach(d StoredDeliverer)
	// Store makes op's message durable in its group's stream, sets the
	// message's Offset and Epoch, and returns once it is durable. A
	// *DuplicateError says that a message with the same idempotency key was
	// stored within the history's window: nothing was stored or delivered
	// again. A failure wraps ErrHistoryUnavailable (nothing was delivered).
	Store(ctx context.Context, op *Op) error
}

// StoredDeliverer receives the messages a DeliveringHistory stored.
type StoredDeliverer interface {
	DeliverStored(op *Op)
}

// DuplicateError answers a send whose idempotency key a DeliveringHistory
// stored already within its window (sent through any node): Offset and Epoch
// are the first send's.
type DuplicateError struct {
	Offset uint64
	Epoch  string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("core: a send with this idempotency key is stored already, at offset %d", e.Offset)
}

// joiner is a recovering join in progress on a DeliveringHistory's group: it
// buffers the group's stored messages delivered meanwhile (see joinStored).
type joiner struct {
	msgs     []*Message
	bytes    int
	max      int  // bound of bytes, the conn's outbound queue limit
	overflow bool // more than max arrived: the conn is shed like a slow consumer
}

func (j *joiner) add(m *Message) {
	if j.overflow {
		return
	}
	j.bytes += len(m.Data)
	if j.bytes > j.max {
		j.overflow, j.msgs = true, nil
		return
	}
	j.msgs = append(j.msgs, m)
}

// DeliverStored delivers a message a DeliveringHistory stored to this node's
// members of its group, and to the recovering joins of that group in
// progress. The history calls it for each stored message in stream order.
func (n *Node) DeliverStored(op *Op) {
	n.mu.RLock()
	h := n.hubs[strings.ToLower(op.Hub)]
	if h != nil {
		h.refs.Add(1)
	}
	n.mu.RUnlock()
	if h == nil {
		return // no conns here: nothing to deliver, and no join in progress (a joiner holds its hub)
	}
	defer h.release()
	if op.Kind != OpSend || op.Target.Kind != ToGroup || op.Message == nil {
		h.deliver(op)
		return
	}
	group := op.Target.Name
	sh := h.seq.shard(group)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h.deliver(op)
	for _, j := range sh.joiners[group] {
		j.add(op.Message)
	}
}

// joinStored is JoinGroupFrom on a DeliveringHistory's group. The joiner is
// registered (under the group's sequencer shard lock, which DeliverStored
// holds while it delivers) before the stream's top is read, so every message
// after top is either buffered or, once joined, delivered as to any member;
// the replay covers (from, top]. The join and the delivery of the buffer
// after top happen under that lock: nothing is missed, nothing comes twice.
func (h *Hub) joinStored(c *Conn, group string, hist History, from *StreamPosition) (JoinResult, error) {
	h, err := h.held()
	if err != nil {
		return JoinResult{}, err
	}
	defer h.release()
	sh := h.seq.shard(group)
	j := &joiner{max: h.node.cfg.Limits.MaxQueueBytes}
	sh.mu.Lock()
	if sh.joiners == nil {
		sh.joiners = make(map[string][]*joiner)
	}
	sh.joiners[group] = append(sh.joiners[group], j)
	sh.mu.Unlock()
	top, epoch := hist.Top(h.name, group)
	res := JoinResult{History: true, Offset: top, Epoch: epoch}
	inGroup := c.InGroup(group)
	var msgs []*Message
	if from != nil && !inGroup {
		msgs, res.Recovered = hist.Replay(h.name, group, *from, top)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	js := sh.joiners[group]
	for i, x := range js {
		if x == j {
			js = append(js[:i], js[i+1:]...)
			break
		}
	}
	if len(js) == 0 {
		delete(sh.joiners, group)
	} else {
		sh.joiners[group] = js
	}
	if inGroup {
		res.Recovered = from != nil && from.Offset == top && (from.Epoch == "" || from.Epoch == epoch)
		return res, nil
	}
	if j.overflow {
		c.shed("slow consumer: outbound queue exceeded its limit")
		return res, ErrSlowConsumer
	}
	for _, m := range msgs {
		c.deliver(m)
	}
	for _, m := range j.msgs {
		if m.Offset > top || m.Epoch != epoch {
			c.deliver(m)
		}
	}
	return res, h.join(c, group)
}
