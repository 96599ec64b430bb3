package core

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Group state (Azure Web PubSub's newest presence primitive): a member
// keeps one state entry per group (opaque bytes: the dialect's JSON
// object), which lives with its conn on the conn's node; members that
// subscribed to the group's state get a snapshot of every entry (a wide
// request) and then every change (an OpGroupState to the group, delivered
// to the subscribed members only, as a control frame: not sequenced nor
// replayed). An entry goes away, announced as a cleared one, when its
// conn leaves the group or ends (a reliable session only when its recovery
// window ends), and so does a subscription.

// GroupState is Message.Type of a group state change: Message.Data is the
// entry's state (nil: cleared), Group the group, FromUserID the conn's
// user; StateConn and StateAt name the conn and the change's time.
const GroupState DataType = Framed + 1

// MaxStateGroups bounds the groups a conn holds a state entry in.
const MaxStateGroups = 32

// MaxSnapshotItems bounds the entries one node answers for a snapshot (a
// reply must fit a NATS message): beyond it a snapshot holds the first by
// conn id.
const MaxSnapshotItems = 1000

// StateItem is one entry of a group's state.
type StateItem struct {
	ConnID string
	UserID string
	State  []byte // nil: cleared
	At     int64  // Unix milliseconds of the change, increasing per conn
}

// stateEntry is a conn's entry in one group.
type stateEntry struct {
	state []byte
	at    int64
}

// connState is a conn's group state: its entries and its subscriptions.
// Guarded by Conn.mu.
type connState struct {
	entries map[string]stateEntry
	subs    map[string]*stateSub
	lastAt  int64
}

// stateSub is a subscription to a group's state. While its snapshot is
// being read (holding), changes are held; then seen keeps the snapshot's
// time of each conn's entry until a newer change of that conn is queued,
// so that a change the snapshot already has (still on its way from its
// node when the snapshot was read) is not queued again.
type stateSub struct {
	holding bool
	held    []*Message
	seen    map[string]int64
}

// admit reports whether change m is new to the subscriber, and forgets
// the snapshot's time of its conn once it is. c.mu is held.
func (s *stateSub) admit(m *Message) bool {
	at, ok := s.seen[m.StateConn]
	if !ok {
		return true
	}
	if m.StateAt <= at {
		return false
	}
	delete(s.seen, m.StateConn) // later changes of the conn come in order
	return true
}

// nextAt returns the time of a change of c's state: now in milliseconds,
// or one more than its last change. c.mu is held.
func (c *Conn) nextAt() int64 {
	at := max(time.Now().UnixMilli(), c.gs.lastAt+1)
	c.gs.lastAt = at
	return at
}

// SetGroupState sets (state non-nil) or clears c's entry in group, which c
// must be a member of (ErrForbidden otherwise), and tells the group's
// subscribers on every node. At most MaxStateGroups entries per conn
// (ErrGroupLimit).
func (h *Hub) SetGroupState(ctx context.Context, c *Conn, group string, state []byte) error {
	if c.hub != h {
		return fmt.Errorf("%w: %q", ErrConnNotFound, c.id)
	}
	c.mu.Lock()
	if _, member := c.groups[group]; !member {
		c.mu.Unlock()
		return fmt.Errorf("%w: not a member of the group", ErrForbidden)
	}
	_, had := c.gs.entries[group]
	if state != nil && !had && len(c.gs.entries) >= MaxStateGroups {
		c.mu.Unlock()
		return ErrGroupLimit
	}
	if state == nil && !had {
		c.mu.Unlock()
		return nil // nothing to clear
	}
	at := c.nextAt()
	if state == nil {
		delete(c.gs.entries, group)
	} else {
		if c.gs.entries == nil {
			c.gs.entries = make(map[string]stateEntry)
		}
		c.gs.entries[group] = stateEntry{state: state, at: at}
	}
	c.mu.Unlock()
	return h.publishState(ctx, c, group, state, at)
}

func (h *Hub) publishState(ctx context.Context, c *Conn, group string, state []byte, at int64) error {
	m := &Message{Type: GroupState, Group: group, FromUserID: c.userID, Data: state, StateConn: c.id, StateAt: at}
	return h.node.cfg.Broker.Publish(ctx, &Op{Hub: h.name, Kind: OpGroupState, Target: Target{Kind: ToGroup, Name: group}, Message: m})
}

// dropState clears c's entry in group and its subscription after c left
// the group (or ended), telling the subscribers.
func (h *Hub) dropState(c *Conn, group string) {
	c.mu.Lock()
	delete(c.gs.subs, group)
	_, had := c.gs.entries[group]
	var at int64
	if had {
		delete(c.gs.entries, group)
		at = c.nextAt()
	}
	c.mu.Unlock()
	if !had {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.publishState(ctx, c, group, nil, at); err != nil {
		h.node.metrics.presenceErrors.Inc()
		h.node.log.Warn("group state removal not published: subscribers keep the entry", "hub", h.name, "group", group, "conn_id", c.id, "err", err)
	}
}

// SubscribeGroupState subscribes c, a member of group (ErrForbidden
// otherwise), to the group's state and returns the snapshot to queue
// before anything else of it: every entry of the group on every node, in
// conn-id order. Changes that arrive until release is called are held and
// queued after the snapshot by release (those the snapshot already has
// dropped); release must be called exactly once, after the snapshot was
// queued with queue.
func (h *Hub) SubscribeGroupState(ctx context.Context, c *Conn, group string) (items []StateItem, release func(queue func(*Message)), err error) {
	c.mu.Lock()
	if _, member := c.groups[group]; !member {
		c.mu.Unlock()
		return nil, nil, fmt.Errorf("%w: not a member of the group", ErrForbidden)
	}
	if c.gs.subs == nil {
		c.gs.subs = make(map[string]*stateSub)
	}
	sub := &stateSub{holding: true}
	c.gs.subs[group] = sub
	c.mu.Unlock()
	r, err := h.Do(ctx, Request{Kind: ReqGroupState, Group: group})
	if err == nil {
		err = r.Err
	}
	if err != nil {
		c.mu.Lock()
		if c.gs.subs[group] == sub {
			delete(c.gs.subs, group)
		}
		c.mu.Unlock()
		return nil, nil, err
	}
	items = r.States
	seen := make(map[string]int64, len(items))
	for _, it := range items {
		seen[it.ConnID] = it.At
	}
	release = func(queue func(*Message)) {
		c.mu.Lock()
		if c.gs.subs[group] != sub { // unsubscribed or left meanwhile
			c.mu.Unlock()
			return
		}
		sub.seen = seen
		var pending []*Message
		for _, m := range sub.held {
			if sub.admit(m) {
				pending = append(pending, m)
			}
		}
		sub.holding, sub.held = false, nil
		c.mu.Unlock()
		for _, m := range pending {
			queue(m)
		}
	}
	return items, release, nil
}

// UnsubscribeGroupState ends c's subscription to group's state.
func (h *Hub) UnsubscribeGroupState(c *Conn, group string) {
	c.mu.Lock()
	delete(c.gs.subs, group)
	c.mu.Unlock()
}

// GroupStates returns this node's entries of group, in conn-id order, at
// most MaxSnapshotItems.
func (h *Hub) GroupStates(group string) []StateItem {
	var items []StateItem
	h.groups.each(group, func(c *Conn) {
		c.mu.Lock()
		if e, ok := c.gs.entries[group]; ok {
			items = append(items, StateItem{ConnID: c.id, UserID: c.userID, State: e.state, At: e.at})
		}
		c.mu.Unlock()
	})
	slices.SortFunc(items, func(a, b StateItem) int { return strings.Compare(a.ConnID, b.ConnID) })
	if len(items) > MaxSnapshotItems {
		items = items[:MaxSnapshotItems]
	}
	return items
}

// mergeStates merges the nodes' entries in conn-id order.
func mergeStates(rs []Reply) Reply {
	var out Reply
	for _, r := range rs {
		out.States = append(out.States, r.States...)
		if r.Err != nil && out.Err == nil {
			out.Err = r.Err
		}
	}
	slices.SortFunc(out.States, func(a, b StateItem) int { return strings.Compare(a.ConnID, b.ConnID) })
	return out
}

// deliverState hands a state change to this node's subscribed members of
// its group: queued as a control frame, or held while their snapshot is
// being read.
func (h *Hub) deliverState(m *Message) {
	h.groups.each(m.Group, func(c *Conn) {
		c.mu.Lock()
		sub := c.gs.subs[m.Group]
		switch {
		case sub == nil:
			c.mu.Unlock()
			return
		case sub.holding:
			if len(sub.held) < MaxSnapshotItems {
				sub.held = append(sub.held, m)
			}
			c.mu.Unlock()
			return
		}
		ok := sub.admit(m)
		c.mu.Unlock()
		if ok {
			c.SendMessage(m)
		}
	})
}

// SendMessage queues m for c as a control frame (not sequenced, not
// replayed): group state frames, which clients do not acknowledge.
func (c *Conn) SendMessage(m *Message) {
	if f := m.encode(c.codec); f.Data != nil {
		c.Send(f)
	}
}
