package cluster

import (
	"encoding/base64"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/core"
)

// Interest: an operation crosses NATS only to the nodes that may hold a
// recipient, once per node whatever its number of recipients there.
//
//	to a group       sb.<ns>.grp.<hub>.<group>   the nodes with members of the group: a node
//	                                             subscribes while it has some (core tells it,
//	                                             see core.Interest)
//	to a connection  sb.<ns>.node.<id>.ops       the node that holds it (its id's prefix); a conn
//	                                             id without a valid node id reaches nobody
//	to a user, all   sb.<ns>.ops.<hub>           every node
//
// <hub> is the hub name with '.' as '~', <group> the group name in unpadded
// base64url (any group name, '.', '*', '>' and spaces included, is one
// subject token). Sends to a user go to every node rather than to a
// per-user subject: a subject per user would make every connect and
// disconnect a subscription change that NATS spreads to every server,
// while a user send costs each node one small message; groups, which a
// node joins once for many sends, are worth their subscriptions.
//
// A join must not return before the node receives the group's ops: a send
// accepted after it (by any node) would miss the member. So the first
// member's join subscribes (WatchGroup, under core's group lock), and every
// join waits (AwaitGroup) until a sync after that subscription: a round
// trip through every other live node (sb.<ns>.sync), which tells that
// every node's NATS server has the subscription (a server passes a
// subscription on to the others before the messages published after it).
// One sync covers every subscription made before it, so concurrent joins
// share one.
// groupSub is a subscription to a group's ops.
type groupSub struct {
	sub *nats.Subscription // nil: NATS refused it (closed connection)
	gen uint64             // interest.gen when it was made
}

type groupKey struct{ hub, group string }

// interest is a broker's group subscriptions.
type interest struct {
	mu     sync.Mutex
	groups map[groupKey]*groupSub
	gen    uint64 // subscriptions made so far
	// confirmed: the NATS servers of every node have every subscription
	// up to this gen; syncMu makes one sync at a time (AwaitGroup).
	confirmed atomic.Uint64
	syncMu    sync.Mutex
	// deaf (guarded by syncMu) are the nodes that did not answer a sync;
	// syncs still ask them but do not wait for them. Bounded by the
	// heartbeat view (maxNodes); a node's entry goes when it answers.
	deaf map[string]bool
	// seq numbers the changes of groups (guarded by mu; peers.go), peers
	// are the other nodes' groups.
	seq   uint64
	peers peers
}

// fixedSubs are a broker's subscriptions besides its groups': the
// hub-wide ops, the node's own ops, its requests, syncs, dump requests
// (peers.go).
const fixedSubs = 5

var _ core.Interest = (*Broker)(nil)

// groupSubject is the subject of the ops to group of hub.
func (b *Broker) groupSubject(hub, group string) string {
	return "sb." + b.ns + ".grp." + hubToken(hub) + "." + base64.RawURLEncoding.EncodeToString([]byte(group))
}

// nodeSubject is the subject of the ops to the conns of node id.
func (b *Broker) nodeSubject(id string) string { return "sb." + b.ns + ".node." + id + ".ops" }

// route returns the subject of op, whether this node may hold a recipient
// (local), whether another node may (remote: op is published), and false
// when no node can hold one.
func (b *Broker) route(op *core.Op) (subject string, local, remote, ok bool) {
	switch op.Target.Kind {
	case core.ToGroup:
		local, remote := b.groupRoute(op.Hub, op.Target.Name)
		return b.groupSubject(op.Hub, op.Target.Name), local, remote, true
	case core.ToConn:
		node := core.ConnNode(op.Target.Name)
		if !ValidNodeID(node) {
			return "", false, false, false
		}
		self := node == b.c.cfg.NodeID
		return b.nodeSubject(node), self, !self, true
	}
	return b.subject(op.Hub), true, true, true
}

// groupRoute reports, under one lock, whether this node subscribes to
// group's ops (local) and whether another node may (remote, peers.go).
func (b *Broker) groupRoute(hub, group string) (local, remote bool) {
	k := groupKey{hub, group}
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	return b.in.groups[k] != nil, b.othersWatchLocked(k)
}

// WatchGroup subscribes to group's ops: the node has its first member of
// it. It does not wait for NATS (see AwaitGroup).
func (b *Broker) WatchGroup(hub, group string) {
	subject := b.groupSubject(hub, group)
	b.in.mu.Lock()
	defer b.in.mu.Unlock()
	k := groupKey{hub, group}
	if b.in.groups[k] != nil {
		return
	}
	sub, err := b.c.nc.ChanSubscribe(subject, b.inbox.ch)
	if err != nil {
		b.subErrs.Inc()
		b.c.log.Error("subscribing to a group's operations", "hub", hub, "subject", subject, "err", err)
		sub = nil
	}
	b.in.gen++
	b.in.groups[k] = &groupSub{sub: sub, gen: b.in.gen}
	b.subs.Set(float64(fixedSubs + len(b.in.groups)))
	b.changedLocked(k, true)
}

// UnwatchGroup unsubscribes from group's ops: the node's last member left.
func (b *Broker) UnwatchGroup(hub, group string) {
	b.in.mu.Lock()
	k := groupKey{hub, group}
	g := b.in.groups[k]
	if g == nil {
		b.in.mu.Unlock()
		return
	}
	delete(b.in.groups, k)
	b.subs.Set(float64(fixedSubs + len(b.in.groups)))
	b.changedLocked(k, false)
	b.in.mu.Unlock()
	if g.sub != nil {
		if err := g.sub.Unsubscribe(); err != nil && b.c.nc.IsConnected() {
			b.subErrs.Inc()
			b.c.log.Warn("unsubscribing from a group's operations", "hub", hub, "subject", g.sub.Subject, "err", err)
		}
	}
}

// AwaitGroup returns once every NATS server of the cluster's nodes has the
// node's subscription to group, at most half the request timeout; past it,
// or when NATS is down, it counts errors_total{kind="subscribe"} and
// returns (nats.go subscribes again on reconnect). One sync (see sync)
// covers every subscription made before it: concurrent joins share it.
func (b *Broker) AwaitGroup(hub, group string) {
	b.in.mu.Lock()
	g := b.in.groups[groupKey{hub, group}]
	b.in.mu.Unlock()
	if g == nil || g.sub == nil || b.in.confirmed.Load() >= g.gen {
		return
	}
	b.in.syncMu.Lock()
	defer b.in.syncMu.Unlock()
	if b.in.confirmed.Load() >= g.gen { // a sync that started after it
		return
	}
	b.in.mu.Lock()
	gen := b.in.gen
	b.in.mu.Unlock()
	if err := b.sync(); err != nil {
		b.subErrs.Inc()
		b.c.log.Warn("a group's subscription was not confirmed by every node's NATS server: sends to the group may miss a member that just joined",
			"hub", hub, "err", err)
	}
	// Confirmed or waited for as long as it may: the joins it covers go
	// on either way, rather than each waiting again.
	b.in.confirmed.Store(gen) // under syncMu: it only grows
}

// sync makes a round trip through every other live node: it publishes on
// sb.<ns>.sync, which every node answers at once, and waits for their
// answers. NATS handles one connection's messages in order, and a server
// forwards a subscription to the other servers (RS+ on the route) before
// any message published after it; so once a node answered, its server has
// every subscription this node made before the sync. Alone (no other live
// node) a flush does for this node's server.
func (b *Broker) sync() error {
	timeout := b.orderWait()
	others := map[string]bool{}
	for _, id := range b.c.liveNodes() {
		if id != b.c.cfg.NodeID && !b.in.deaf[id] {
			others[id] = true
		}
	}
	if len(others) == 0 {
		return b.c.nc.FlushTimeout(timeout)
	}
	inbox := b.c.nc.NewRespInbox()
	sub, err := b.c.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("cluster: sync: %w", err)
	}
	defer sub.Unsubscribe()
	if err := b.c.nc.PublishRequest(b.syncSubject(), inbox, []byte(b.c.cfg.NodeID)); err != nil {
		return fmt.Errorf("cluster: sync: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for len(others) > 0 {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			// Later syncs do not wait for these nodes (a node of an
			// older version, one that hangs) until one answers again.
			for id := range others {
				b.in.deaf[id] = true
			}
			return fmt.Errorf("cluster: sync: %d node(s) did not answer: %w", len(others), err)
		}
		delete(others, string(m.Data))
		delete(b.in.deaf, string(m.Data))
	}
	return nil
}

func (b *Broker) syncSubject() string { return "sb." + b.ns + ".sync" }

// answerSync answers another node's sync with this node's id, after the
// deltas (peers.go) it published before the sync, which come on this
// subscription too.
func (b *Broker) answerSync(m *nats.Msg) {
	if len(m.Data) > 0 && (m.Data[0] == deltaWatch || m.Data[0] == deltaUnwatch) {
		b.receiveDelta(m.Data)
		return
	}
	if string(m.Data) == b.c.cfg.NodeID || m.Reply == "" {
		return
	}
	if err := m.Respond([]byte(b.c.cfg.NodeID)); err != nil {
		b.subErrs.Inc()
	}
}
