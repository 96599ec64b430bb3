package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Peer interest: which groups the other nodes subscribe to, so that a send
// to a group that no other node has members of is not published at all (it
// is delivered here, as on a single node). NATS would drop it anyway, but
// only after this node encoded and wrote it and the NATS server read and
// parsed it; for a node whose groups are its own (a one-node cluster, rooms
// that live on one node) that is the whole cost of clustering.
//
// Every node numbers the changes of its group subscriptions (seq) and
// publishes each one, a delta, on sb.<ns>.sync, the subject of the syncs
// (interest.go); its heartbeats carry its last seq per namespace. A node
// keeps, per other node, that node's set of groups and the seq it is at:
//
//   - A node's record is complete when it holds the node's whole set: it
//     starts learning (first heartbeat, first delta, reconnect, a restart
//     seen as a new instance), asks the node for a dump of its set (a
//     request on sb.<ns>.interest.<id>, answered with the set and its seq),
//     applies the deltas that came meanwhile above the dump's seq, and is
//     complete. A delta above seq+1 (one was lost), or a seq not reached a
//     period after a heartbeat announced it (a trailing one was lost), send it back to
//     learning.
//   - A send to a group is published unless every other live node has a
//     complete record without the group, and this node has been connected
//     to NATS for three heartbeat periods (so it has heard of every live
//     node). Anything unknown publishes, as before.
//
// Why a join still cannot miss a send: the first member's join on node B
// publishes the delta and then waits for the sync (interest.go) that every
// other node answers on the same subscription, after the delta; so when the
// join returns, every node B knows of has B in its record of the group, and
// publishes the sends it accepts from then on. A node B does not know of
// yet (it started within the last milliseconds and B has not had its
// heartbeat) is not waited for; the first heartbeat each way is sent at
// once, and a node's records of a node it met start learning, so this
// takes a node that answered B's dump request before B had its heartbeat.
//
// Sends to all and to users are published always: which nodes hold a hub's
// or a user's connections changes with every connect, which must not cost
// a sync.

// Bounds of what a node keeps of the others.
const (
	maxPendingDeltas = 4096    // deltas kept while a record learns; more: ask again
	maxRemoteGroups  = 1 << 18 // groups kept per node; more: that node counts as watching every group
)

// A delta or a dump starts with its kind; a sync's payload is a node id,
// which never starts with these bytes.
const (
	deltaWatch   = 0x01
	deltaUnwatch = 0x02
)

// delta is a change of a node's group subscriptions.
type delta struct {
	seq   uint64
	watch bool
	k     groupKey
}

// peerRecord is what a node knows of another node's group subscriptions.
type peerRecord struct {
	instance string
	complete bool
	// untracked: its set does not fit (maxRemoteGroups, NATS max_payload)
	// or it publishes no seqs (an older version); it counts as learning
	// and is not asked again until its seq moves.
	untracked bool
	noSeq     bool // untracked: its last heartbeat had no seq for the namespace
	seq       uint64
	groups    map[groupKey]struct{}
	pending   []delta
	overflow  bool      // deltas were dropped while learning
	asking    uint64    // the dump request in flight (its number), 0: none
	ahead     uint64    // the seq of its previous heartbeat
	seen      time.Time // last heartbeat, or when the record was made
}

// peers is a broker's records of the other nodes (mu guards it).
type peers struct {
	nodes    map[string]*peerRecord // by node id, at most maxNodes
	watched  map[groupKey]int       // records holding the group
	learning int                    // records not complete
	overflow bool                   // a node without a record (maxNodes)
	since    time.Time              // connected to NATS since; zero: not connected
	asks     uint64                 // dump requests made
}

// othersWatch reports whether a send to group must be published: another
// node may have members of it.
func (b *Broker) othersWatch(hub, group string) bool {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	return b.othersWatchLocked(groupKey{hub, group})
}

func (b *Broker) othersWatchLocked(k groupKey) bool {
	p := &b.in.peers
	if p.since.IsZero() || p.learning > 0 || p.overflow || time.Since(p.since) < 3*b.c.cfg.HeartbeatInterval {
		return true
	}
	return p.watched[k] > 0
}

// changedLocked publishes the change of this node's subscription to a
// group as the next delta; b.in.mu is held (deltas leave in seq order).
// A delta NATS refuses is a gap the others see at the next one, or in the
// heartbeats.
func (b *Broker) changedLocked(k groupKey, watch bool) {
	b.in.seq++
	d := encodeDelta(nil, b.c.cfg.NodeID, delta{seq: b.in.seq, watch: watch, k: k})
	if err := b.c.nc.Publish(b.syncSubject(), d); err != nil {
		b.subErrs.Inc()
	}
}

// interestSeq is this node's last delta, for its heartbeats.
func (b *Broker) interestSeq() uint64 {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	return b.in.seq
}

func (b *Broker) interestSubject(node string) string { return "sb." + b.ns + ".interest." + node }

// answerDump answers another node's dump request with this node's groups
// and the seq they are at, or with an empty dump marked too big when they
// do not fit NATS's max_payload.
func (b *Broker) answerDump(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	b.in.mu.Lock()
	keys := make([]groupKey, 0, len(b.in.groups))
	for k := range b.in.groups {
		keys = append(keys, k)
	}
	out := encodeDump(nil, b.in.seq, keys, int(b.c.nc.MaxPayload()))
	b.in.mu.Unlock()
	if err := m.Respond(out); err != nil {
		b.subErrs.Inc()
	}
}

// receiveDelta applies another node's delta; it runs on the sync
// subscription, so a node's deltas and syncs are taken in the order they
// were published.
func (b *Broker) receiveDelta(data []byte) {
	origin, d, err := decodeDelta(data)
	if err != nil {
		b.decErrs.Inc()
		b.c.log.Error("dropped an interest delta from NATS", "bytes", len(data), "err", err)
		return
	}
	if origin == b.c.cfg.NodeID {
		return
	}
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	r := b.recordLocked(origin, "")
	if r == nil {
		return
	}
	switch {
	case r.complete && d.seq <= r.seq: // already had it
	case r.complete && d.seq == r.seq+1:
		b.applyLocked(r, d)
	default:
		if r.complete {
			b.c.log.Warn("missed a node's interest change; asking it for its groups", "node_id", origin, "had", r.seq, "got", d.seq)
			b.learnLocked(r)
		}
		if r.untracked {
			return // asked again when a heartbeat shows its seq moved
		}
		if len(r.pending) < maxPendingDeltas {
			r.pending = append(r.pending, d)
		} else {
			r.overflow = true
		}
		b.askLocked(origin, r)
	}
}

// peerHeartbeat notes another node's heartbeat: a record for it, and its
// seq (has: the heartbeat carries one for this namespace).
func (b *Broker) peerHeartbeat(id, instance string, seq uint64, has bool) {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	r := b.recordLocked(id, instance)
	if r == nil {
		return
	}
	r.seen = time.Now()
	if !has { // an older version, or its broker of this namespace is not up yet
		if !r.untracked {
			b.untrackLocked(r)
		}
		r.noSeq = true
		return
	}
	if r.noSeq {
		r.noSeq, r.untracked = false, false
		b.askLocked(id, r)
		return
	}
	switch {
	case r.complete && r.ahead > r.seq:
		// The seq the previous heartbeat announced has not come as a
		// delta in a whole period: one was lost.
		b.c.log.Warn("a node's interest is ahead of what this node received; asking it for its groups", "node_id", id, "had", r.seq, "heartbeat", r.ahead)
		b.learnLocked(r)
		b.askLocked(id, r)
	case r.complete:
		r.ahead = seq
	case r.untracked && seq == r.seq:
		// Not asked again until its groups change.
	default:
		r.untracked = false
		b.askLocked(id, r)
	}
}

// forgetPeers drops the records of the nodes without a heartbeat since
// before; it runs with the heartbeats, which forget those nodes alike.
func (b *Broker) forgetPeers(before time.Time) {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	p := &b.in.peers
	for id, r := range p.nodes {
		if r.seen.Before(before) {
			b.dropGroupsLocked(r)
			if !r.complete {
				p.learning--
			}
			delete(p.nodes, id)
		}
	}
	if len(p.nodes) < maxNodes {
		p.overflow = false // a node without a record makes one at its next heartbeat
	}
}

// connected notes that the NATS connection is up (again), or down
// (!up): every record learns again, since deltas may have been missed.
func (b *Broker) connected(up bool) {
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	p := &b.in.peers
	p.since = time.Time{}
	if up {
		p.since = time.Now()
	}
	for id, r := range p.nodes {
		b.learnLocked(r)
		if up {
			b.askLocked(id, r)
		}
	}
}

// recordLocked returns the record of node id, made learning if it is new
// or its instance changed (a restart); nil when maxNodes are kept.
func (b *Broker) recordLocked(id, instance string) *peerRecord {
	p := &b.in.peers
	r := p.nodes[id]
	if r == nil {
		if len(p.nodes) >= maxNodes {
			p.overflow = true
			return nil
		}
		r = &peerRecord{instance: instance, seen: time.Now()}
		p.nodes[id] = r
		p.learning++
		b.askLocked(id, r)
		return r
	}
	if instance != "" && r.instance != instance {
		if r.instance != "" {
			b.learnLocked(r)
			b.dropGroupsLocked(r)
			b.askLocked(id, r)
		}
		r.instance = instance
	}
	return r
}

// learnLocked makes r learning: its set no longer counts as whole.
func (b *Broker) learnLocked(r *peerRecord) {
	if r.complete {
		r.complete = false
		b.in.peers.learning++
	}
	r.ahead = 0
}

// untrackLocked gives up on r's set until its seq moves.
func (b *Broker) untrackLocked(r *peerRecord) {
	b.learnLocked(r)
	b.dropGroupsLocked(r)
	r.untracked, r.pending, r.overflow = true, nil, false
}

func (b *Broker) applyLocked(r *peerRecord, d delta) {
	r.seq = d.seq
	if d.watch {
		if _, ok := r.groups[d.k]; !ok {
			if len(r.groups) >= maxRemoteGroups {
				b.untrackLocked(r)
				return
			}
			if r.groups == nil {
				r.groups = map[groupKey]struct{}{}
			}
			r.groups[d.k] = struct{}{}
			b.in.peers.watched[d.k]++
		}
		return
	}
	if _, ok := r.groups[d.k]; ok {
		delete(r.groups, d.k)
		b.unwatchedLocked(d.k)
	}
}

func (b *Broker) unwatchedLocked(k groupKey) {
	if b.in.peers.watched[k]--; b.in.peers.watched[k] <= 0 {
		delete(b.in.peers.watched, k)
	}
}

func (b *Broker) dropGroupsLocked(r *peerRecord) {
	for k := range r.groups {
		b.unwatchedLocked(k)
	}
	r.groups = nil
}

// askLocked requests node id's dump unless one is in flight or NATS is
// down; the answer comes on a goroutine the cluster owns.
func (b *Broker) askLocked(id string, r *peerRecord) {
	if r.asking != 0 || r.untracked || b.in.peers.since.IsZero() {
		return
	}
	b.in.peers.asks++
	ask := b.in.peers.asks
	r.asking = ask
	r.overflow = false
	if !b.c.spawn(func() { b.dump(id, ask) }) {
		r.asking = 0
	}
}

// dump asks node id for its groups and applies the answer to its record,
// if the record still waits for this request.
func (b *Broker) dump(id string, ask uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), b.c.cfg.RequestTimeout)
	defer cancel()
	go func() { // Close does not wait for the answer of a node that is gone
		select {
		case <-b.c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	m, err := b.c.nc.RequestWithContext(ctx, b.interestSubject(id), nil)
	var (
		seq  uint64
		keys []groupKey
		big  bool
	)
	if err == nil {
		seq, keys, big, err = decodeDump(m.Data)
		if err != nil {
			b.decErrs.Inc()
		}
	}
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	r := b.in.peers.nodes[id]
	if r == nil || r.asking != ask {
		return
	}
	r.asking = 0
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		// Not subscribed yet (it is starting), or an older version: the
		// next heartbeat asks again, or marks it untracked.
		return
	case err != nil:
		b.c.log.Warn("asking a node for its groups", "node_id", id, "err", err)
		return // the next heartbeat asks again
	case big || len(keys) > maxRemoteGroups:
		b.untrackLocked(r)
		r.seq = seq
		return
	}
	b.dropGroupsLocked(r)
	r.groups = make(map[groupKey]struct{}, len(keys))
	for _, k := range keys {
		r.groups[k] = struct{}{}
		b.in.peers.watched[k]++
	}
	r.seq = seq
	if r.overflow {
		r.pending, r.overflow = nil, false
		b.askLocked(id, r)
		return
	}
	pending := r.pending
	r.pending = nil
	for _, d := range pending {
		switch {
		case d.seq <= r.seq:
		case d.seq == r.seq+1:
			b.applyLocked(r, d)
		default: // a gap: ask again
			b.askLocked(id, r)
			return
		}
	}
	if !r.complete && !r.untracked {
		r.complete = true
		r.ahead = 0
		b.in.peers.learning--
	}
}

// errInterest is the cause of every delta or dump decoding failure.
var errInterest = errors.New("cluster: bad interest message")

// encodeDelta appends origin's delta d:
//
//	kind    byte (deltaWatch, deltaUnwatch)
//	origin, hub, group   string each
//	seq     uvarint
func encodeDelta(dst []byte, origin string, d delta) []byte {
	kind := byte(deltaUnwatch)
	if d.watch {
		kind = deltaWatch
	}
	dst = append(dst, kind)
	dst = appendString(dst, origin)
	dst = appendString(dst, d.k.hub)
	dst = appendString(dst, d.k.group)
	return appendUvarint(dst, d.seq)
}

func decodeDelta(b []byte) (origin string, d delta, err error) {
	dec := decoder{b: b}
	kind := dec.byte()
	origin, d.k.hub, d.k.group = dec.string(), dec.string(), dec.string()
	d.seq = dec.uvarint()
	switch {
	case dec.err != nil:
		return "", delta{}, fmt.Errorf("%w: %w", errInterest, dec.err)
	case kind != deltaWatch && kind != deltaUnwatch:
		return "", delta{}, fmt.Errorf("%w: kind %d", errInterest, kind)
	case len(dec.b) != 0:
		return "", delta{}, fmt.Errorf("%w: %d trailing bytes", errInterest, len(dec.b))
	case !ValidNodeID(origin):
		return "", delta{}, fmt.Errorf("%w: origin %q", errInterest, origin)
	}
	d.watch = kind == deltaWatch
	return origin, d, nil
}

// encodeDump appends a dump of keys at seq, or, when it would pass max
// bytes, a dump marked too big with no keys:
//
//	big     byte (1: too big, no keys follow)
//	seq     uvarint
//	count   uvarint, then hub and group, a string each, per key
func encodeDump(dst []byte, seq uint64, keys []groupKey, max int) []byte {
	start := len(dst)
	dst = append(dst, 0)
	dst = appendUvarint(dst, seq)
	dst = appendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		dst = appendString(dst, k.hub)
		dst = appendString(dst, k.group)
		if max > 0 && len(dst)-start > max {
			return appendUvarint(append(dst[:start], 1), seq)
		}
	}
	return dst
}

func decodeDump(b []byte) (seq uint64, keys []groupKey, big bool, err error) {
	dec := decoder{b: b}
	flag := dec.byte()
	if dec.err == nil && flag > 1 {
		return 0, nil, false, fmt.Errorf("%w: dump flag %d", errInterest, flag)
	}
	big = flag == 1
	seq = dec.uvarint()
	if big {
		if dec.err != nil || len(dec.b) != 0 {
			return 0, nil, false, fmt.Errorf("%w: dump", errInterest)
		}
		return seq, nil, true, nil
	}
	n := dec.uvarint()
	if dec.err == nil && n > uint64(len(dec.b))/2 { // a key takes two bytes at least
		return 0, nil, false, fmt.Errorf("%w: dump of %d groups in %d bytes", errInterest, n, len(dec.b))
	}
	keys = make([]groupKey, 0, n)
	for range n {
		keys = append(keys, groupKey{dec.string(), dec.string()})
	}
	if dec.err != nil || len(dec.b) != 0 {
		return 0, nil, false, fmt.Errorf("%w: dump", errInterest)
	}
	return seq, keys, false, nil
}
