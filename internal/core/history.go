package core

import (
	"context"
	"hash/maphash"
	"sync"
)

// History is the durable log of the groups that keep history. core calls it
// on every send to such a group and on every join that asks for recovery;
// history.Service implements it (core does no file I/O).
type History interface {
	// Keeps reports whether group of hub keeps history.
	Keeps(hub, group string) bool
	// Append adds m to the group's stream and sets m.Offset and m.Epoch.
	// It returns without waiting for the disk; wait does, and must be
	// called exactly once. Append is called with the group's sequencer
	// lock held, so it must not block for long.
	Append(ctx context.Context, hub, group string, m *Message) (wait func() error, err error)
	// Top returns the group stream's epoch ("" when it does not exist yet)
	// and the last offset given out.
	Top(hub, group string) (offset uint64, epoch string)
	// Replay returns the messages of the stream after from.Offset up to
	// upTo, when from is recoverable: same epoch, nothing missing trimmed
	// away, not more than the replay bound. Otherwise it returns
	// recovered = false and no messages.
	Replay(hub, group string, from StreamPosition, upTo uint64) (msgs []*Message, recovered bool)
}

// rollbacker is a History that can take back offsets it gave out: when a
// write fails, the records not yet durable are refused (never broadcast) and
// their offsets given again to the next records, so that the offsets
// broadcast stay gapless. Rollbacks counts those failures; a recovering join
// whose Top was taken before one and whose turn starts after it asks again.
type rollbacker interface {
	Rollbacks() uint64
}

// StreamPosition is a place in a group's stream, as a client remembers it.
type StreamPosition struct {
	Offset uint64
	Epoch  string // "": the client does not know it (taken as the current one)
}

// JoinResult tells a joining client where it stands in the group's stream.
type JoinResult struct {
	History   bool // the group keeps history; the fields below are set
	Recovered bool // every message after the client's position was replayed
	Offset    uint64
	Epoch     string
}

// sequencer orders, per group of a hub, the broadcast of durable messages and
// the joins that replay history, so that a joiner gets every message once:
// by replay if it came before its join, live if after. Each durable send and
// each recovering join takes a turn in its group's chain under the shard
// lock (for a send, together with its offset); a turn starts when the
// previous one has ended.
type sequencer struct {
	seed   maphash.Seed
	shards [64]seqShard
}

type seqShard struct {
	mu      sync.Mutex
	tails   map[string]chan struct{} // group → channel closed when its last turn ends
	joiners map[string][]*joiner     // group → recovering joins in progress (a DeliveringHistory's)
	_       [32]byte
}

func (s *sequencer) shard(group string) *seqShard {
	return &s.shards[maphash.String(s.seed, group)%uint64(len(s.shards))]
}

// turn queues a turn for group; the shard lock must be held. It returns the
// channel to wait on before starting (nil: start now) and the one to close
// with end.
func (sh *seqShard) turn(group string) (prev, done chan struct{}) {
	if sh.tails == nil {
		sh.tails = make(map[string]chan struct{})
	}
	prev = sh.tails[group]
	done = make(chan struct{})
	sh.tails[group] = done
	return prev, done
}

// end ends a turn and forgets the group when no turn follows.
func (sh *seqShard) end(group string, done chan struct{}) {
	sh.mu.Lock()
	if sh.tails[group] == done {
		delete(sh.tails, group)
	}
	sh.mu.Unlock()
	close(done)
}

// sendDurable persists op's message in the group's stream, then broadcasts
// it, in offset order; it returns once both are done. A message is broadcast
// only when it is durable, and is durable before the call returns nil.
//
// The turn is taken in the sequencer of the node's hub of the name, held
// meanwhile, so that a stand-in or a stale hub never orders a group beside
// the live one, and a hub with a turn in flight is never reclaimed.
func (h *Hub) sendDurable(ctx context.Context, hist History, op *Op) error {
	finish, err := h.beginDurable(ctx, hist, op)
	if err != nil {
		return err
	}
	return finish()
}

// beginDurable is the first half of sendDurable: it appends the message (its
// offset is given now, so messages begun one after the other keep that order)
// and takes its turn; finish waits until it is durable and broadcasts it after
// the group's earlier turns. finish must be called exactly once: until it is,
// the hub is held and the group's later turns wait.
func (h *Hub) beginDurable(ctx context.Context, hist History, op *Op) (finish func() error, err error) {
	if dh, ok := hist.(DeliveringHistory); ok {
		// The history orders, stores and delivers (Node.DeliverStored):
		// stored here, so that sends begun one after the other keep their
		// order; finish has nothing left to do.
		sctx, span := startSpan(ctx, "switchboard.history.store", op)
		err := dh.Store(sctx, op)
		endSpan(span, err)
		if err != nil {
			return nil, err
		}
		return func() error { return nil }, nil
	}
	h, err = h.held()
	if err != nil {
		return nil, err
	}
	group := op.Target.Name
	sh := h.seq.shard(group)
	actx, appendSpan := startSpan(ctx, "switchboard.history.append", op)
	sh.mu.Lock()
	wait, err := hist.Append(actx, h.name, group, op.Message)
	if err != nil {
		sh.mu.Unlock()
		h.release()
		endSpan(appendSpan, err)
		return nil, err
	}
	prev, done := sh.turn(group)
	sh.mu.Unlock()
	return func() error {
		defer h.release()
		werr := wait() // durable once it returns nil: the append span covers the sync
		endSpan(appendSpan, werr)
		if prev != nil {
			<-prev
		}
		var err error
		if werr == nil {
			// Durable: it must reach the members even if the caller is gone.
			err = h.publish(context.WithoutCancel(ctx), op)
		}
		sh.end(group, done)
		if werr != nil {
			return werr
		}
		return err
	}, nil
}

// history returns the node's history when group keeps one.
func (h *Hub) history(group string) History {
	if hist := h.node.cfg.History; hist != nil && hist.Keeps(h.name, group) {
		return hist
	}
	return nil
}

// JoinGroupFrom adds c to group like JoinGroup. When the group keeps history
// it also tells where the stream stands, and, given from, first queues to c
// every message after from (when recoverable), so that c misses none and
// gets none twice: the replay and the join take one turn in the group's
// sequencer. A conn already in the group gets no replay (it receives the
// group's messages already).
func (h *Hub) JoinGroupFrom(c *Conn, group string, from *StreamPosition) (JoinResult, error) {
	if !ValidGroupName(group) {
		return JoinResult{}, ErrInvalidGroup
	}
	hist := h.history(group)
	if hist == nil {
		return JoinResult{}, h.join(c, group)
	}
	if _, ok := hist.(DeliveringHistory); ok {
		return h.joinStored(c, group, hist, from)
	}
	h, err := h.held() // one sequencer per hub name, as sendDurable
	if err != nil {
		return JoinResult{}, err
	}
	defer h.release()
	sh := h.seq.shard(group)
	rb, _ := hist.(rollbacker)
	var top uint64
	var epoch string
	var done chan struct{}
	for {
		var gen uint64
		sh.mu.Lock()
		if rb != nil {
			gen = rb.Rollbacks()
		}
		top, epoch = hist.Top(h.name, group)
		var prev chan struct{}
		prev, done = sh.turn(group)
		sh.mu.Unlock()
		if prev != nil {
			<-prev
		}
		// Every offset up to top belongs to a send ahead in the chain, now
		// finished: durable and broadcast, unless a failed write refused it
		// and gave its offset back. Then top is stale: take another turn.
		if rb == nil || rb.Rollbacks() == gen {
			break
		}
		sh.end(group, done)
	}
	defer sh.end(group, done)
	res := JoinResult{History: true, Offset: top, Epoch: epoch}
	if c.InGroup(group) {
		res.Recovered = from != nil && from.Offset == top && (from.Epoch == "" || from.Epoch == epoch)
		return res, nil
	}
	if from != nil {
		var msgs []*Message
		msgs, res.Recovered = hist.Replay(h.name, group, *from, top)
		if res.Recovered {
			for _, m := range msgs {
				c.deliver(m)
			}
		}
	}
	return res, h.join(c, group)
}
