package core

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Member notifications (presence, beyond Azure): the members of a group
// that Config.PresenceNotify matches are told when a user joins it (its
// first connection in the group, over the cluster) and when it leaves (its
// last one). Anonymous connections are members and are told, but are not
// announced.
//
// How the cluster counts: every node counts its own connections per
// (group, user) and publishes "this node has the user in the group" at
// each join and "no longer" when its count falls to 0, as an OpPresence to
// the group, so it reaches the nodes with members of it, this one
// included, in the order the node published them (per group and user, in
// the order of the count's changes). Every node with members of a notified group keeps, per
// user, the set of nodes that have the user there (groupPresence): a user
// whose set becomes non-empty has joined, one whose set becomes empty has
// left, and the node tells its own members. A node that gets its first
// member of such a group asks every other node for its users of the group
// (ReqListUsers) before it applies the changes that arrived meanwhile
// (seeding). A node that leaves the heartbeats (NodeGone) is taken out of
// every set: its users leave within the heartbeat timeout.
//
// Races (documented): changes from different nodes have no order between
// them, so a user moving between nodes (leaving on one while joining on
// another) may be seen by some nodes as staying and by others as leaving
// and joining again. A node that misses a change (NATS core loses it) keeps
// a stale set until the user's next change there or the node's departure.

// PresenceNotify configures member notifications (Config.PresenceNotify).
type PresenceNotify struct {
	// Match reports whether the members of group in hub are told of users
	// joining and leaving.
	Match func(hub, group string) bool
	// Message returns what the members get when user joins or leaves
	// ("joined", "left") group. It is delivered as it is, once per event.
	Message func(event, group, user string) *Message
}

// seedLimit bounds the users of a group a node asks each other node for
// when it seeds the group's presence (a bigger page may be refused by the
// envelope): beyond it, users present on that node only are announced as
// joining when they join elsewhere.
const seedLimit = 1000

// presenceTracker is a hub's state of member notifications.
type presenceTracker struct {
	hub *Hub
	cfg *PresenceNotify
	// emit orders a tracker's notifications: it is held while the sets
	// change and their notifications are delivered, so two events of one
	// user never cross. Taken before hub shard locks; never under one.
	emit sync.Mutex
	mu   sync.Mutex // guards local and groups; a leaf
	// pub serializes, per (group, user) (64 shards by hash), a change of
	// this node's count and the publish of its presence, so that one
	// user's presence changes leave the node in the order of its counts.
	// Taken before emit.
	pub     [64]sync.Mutex
	pubSeed maphash.Seed
	// local counts this node's conns per group and user (notified groups
	// and conns with a user id only).
	local  map[groupUser]int
	groups map[string]*groupPresence
}

type groupUser struct{ group, user string }

// groupPresence is, for a notified group with members on this node, the
// nodes that have each user in it.
type groupPresence struct {
	users map[string]map[string]struct{} // user → node ids
	// seeding: the other nodes' users are being read; changes wait in
	// pending. needSeed: nobody has started reading them yet.
	seeding, needSeed bool
	pending           []*Op
}

func newPresenceTracker(h *Hub, cfg *PresenceNotify) *presenceTracker {
	return &presenceTracker{hub: h, cfg: cfg, local: make(map[groupUser]int), groups: make(map[string]*groupPresence), pubSeed: maphash.MakeSeed()}
}

// pubLock returns the publish lock of (group, user).
func (t *presenceTracker) pubLock(group, user string) *sync.Mutex {
	var mh maphash.Hash
	mh.SetSeed(t.pubSeed)
	mh.WriteString(group)
	mh.WriteByte(0)
	mh.WriteString(user)
	return &t.pub[mh.Sum64()%uint64(len(t.pub))]
}

// watch is called under the group's shard lock when this node's first
// member of group joins.
func (t *presenceTracker) watch(group string) {
	if !t.cfg.Match(t.hub.name, group) {
		return
	}
	_, clustered := t.hub.node.cfg.Broker.(Router)
	t.mu.Lock()
	t.groups[group] = &groupPresence{users: make(map[string]map[string]struct{}), seeding: clustered, needSeed: clustered}
	t.mu.Unlock()
}

// unwatch is called under the group's shard lock when this node's last
// member of group leaves.
func (t *presenceTracker) unwatch(group string) {
	t.mu.Lock()
	delete(t.groups, group)
	t.mu.Unlock()
}

// joined is called after c joined groups (new memberships only, once the
// broker receives their ops): it seeds a group's presence if c's join made
// it tracked, and publishes that this node has c's user in each group.
// Every join publishes, not only the user's first here: a repeat is a
// no-op for every node, and it puts this node back in the set of a group
// whose tracking restarted (its last member left and another joined)
// while the count still had a conn on its way out.
func (t *presenceTracker) joined(c *Conn, groups []string) {
	for _, g := range groups {
		t.mu.Lock()
		gp := t.groups[g]
		seed := gp != nil && gp.needSeed
		if seed {
			gp.needSeed = false
		}
		t.mu.Unlock()
		if c.userID != "" && t.cfg.Match(t.hub.name, g) {
			l := t.pubLock(g, c.userID)
			l.Lock()
			t.mu.Lock()
			t.local[groupUser{g, c.userID}]++
			t.mu.Unlock()
			t.publish(g, c.userID, true)
			l.Unlock()
		}
		if seed {
			t.seed(g, gp)
		}
	}
}

// left is called after c left group.
func (t *presenceTracker) left(c *Conn, group string) {
	if c.userID == "" || !t.cfg.Match(t.hub.name, group) {
		return
	}
	k := groupUser{group, c.userID}
	l := t.pubLock(group, c.userID)
	l.Lock()
	defer l.Unlock()
	t.mu.Lock()
	last := false
	if n := t.local[k]; n > 0 {
		last = n == 1
		if last {
			delete(t.local, k)
		} else {
			t.local[k] = n - 1
		}
	}
	t.mu.Unlock()
	if last {
		t.publish(group, c.userID, false)
	}
}

// publish sends this node's change of (group, user) to the nodes with
// members of group, this one included.
func (t *presenceTracker) publish(group, user string, present bool) {
	h := t.hub
	op := &Op{Hub: h.name, Kind: OpPresence, Target: Target{Kind: ToGroup, Name: group}, User: user, Present: present, Origin: h.node.cfg.NodeID}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.node.cfg.Broker.Publish(ctx, op); err != nil {
		h.node.metrics.presenceErrors.Inc()
		h.node.log.Warn("presence change not published: members of the group may not be told", "hub", h.name, "group", group, "user_id", user, "err", err)
	}
}

// seed reads the other nodes' users of group into gp, then applies the
// changes that arrived meanwhile.
func (t *presenceTracker) seed(group string, gp *groupPresence) {
	h := t.hub
	var replies []Reply
	if rt, ok := h.node.cfg.Broker.(Router); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rs, err := rt.AskOthers(ctx, &Request{Kind: ReqListUsers, Hub: h.name, Group: group, Limit: seedLimit})
		cancel()
		if err != nil {
			h.node.metrics.presenceErrors.Inc()
			h.node.log.Warn("presence of a group not read from every node: users there may be announced again", "hub", h.name, "group", group, "err", err)
		}
		replies = rs
	}
	t.emit.Lock()
	defer t.emit.Unlock()
	t.mu.Lock()
	if t.groups[group] != gp { // unwatched meanwhile
		t.mu.Unlock()
		return
	}
	for _, r := range replies {
		if r.Node == "" || r.Node == h.node.cfg.NodeID {
			continue
		}
		for _, u := range r.Users {
			gp.add(u.UserID, r.Node)
		}
	}
	pending := gp.pending
	gp.pending, gp.seeding = nil, false
	var events []presenceEvent
	for _, op := range pending {
		events = gp.apply(op, events)
	}
	t.mu.Unlock()
	t.deliver(events)
}

type presenceEvent struct {
	event, group, user string
}

// deliverOp applies a node's change (an OpPresence delivered here).
func (t *presenceTracker) deliverOp(op *Op) {
	if op.Target.Kind != ToGroup || op.User == "" || op.Origin == "" {
		return
	}
	t.emit.Lock()
	defer t.emit.Unlock()
	t.mu.Lock()
	gp := t.groups[op.Target.Name]
	var events []presenceEvent
	switch {
	case gp == nil: // no member here to tell
	case gp.seeding:
		if len(gp.pending) < maxPending {
			gp.pending = append(gp.pending, op)
		}
	default:
		events = gp.apply(op, nil)
	}
	t.mu.Unlock()
	t.deliver(events)
}

// maxPending bounds the changes a seeding group keeps (one seed's round
// trip's worth); beyond it they are dropped.
const maxPending = 1 << 16

// nodeGone takes node out of every group's sets: its users that were on no
// other node leave.
func (t *presenceTracker) nodeGone(node string) {
	t.emit.Lock()
	defer t.emit.Unlock()
	t.mu.Lock()
	var events []presenceEvent
	for g, gp := range t.groups {
		for u, nodes := range gp.users {
			if _, ok := nodes[node]; ok {
				delete(nodes, node)
				if len(nodes) == 0 {
					delete(gp.users, u)
					events = append(events, presenceEvent{"left", g, u})
				}
			}
		}
	}
	t.mu.Unlock()
	t.deliver(events)
}

func (gp *groupPresence) add(user, node string) bool {
	nodes := gp.users[user]
	if nodes == nil {
		nodes = make(map[string]struct{}, 1)
		gp.users[user] = nodes
	}
	nodes[node] = struct{}{}
	return len(nodes) == 1
}

// apply applies op to gp and appends the event it makes, if any.
func (gp *groupPresence) apply(op *Op, events []presenceEvent) []presenceEvent {
	g, u := op.Target.Name, op.User
	if op.Present {
		if _, had := gp.users[u][op.Origin]; !had && gp.add(u, op.Origin) {
			events = append(events, presenceEvent{"joined", g, u})
		}
		return events
	}
	nodes := gp.users[u]
	if _, ok := nodes[op.Origin]; !ok {
		return events
	}
	delete(nodes, op.Origin)
	if len(nodes) == 0 {
		delete(gp.users, u)
		events = append(events, presenceEvent{"left", g, u})
	}
	return events
}

// deliver tells this node's members of each event's group; t.emit is held.
func (t *presenceTracker) deliver(events []presenceEvent) {
	h := t.hub
	for _, e := range events {
		m := t.cfg.Message(e.event, e.group, e.user)
		if m == nil {
			continue
		}
		h.groups.each(e.group, func(c *Conn) { c.deliver(m) })
		h.node.metrics.presenceEvents.WithLabelValues(e.event).Inc()
	}
}
