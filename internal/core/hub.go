package core

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Hub is a namespace of conns, groups and users.
type Hub struct {
	name string
	node *Node
	*hubIndex
	// interest is the node's Broker when it routes group operations by
	// interest (a cluster's), else nil.
	interest Interest

	// Reclaim (reclaim.go): label is the hub's value of the "hub" metric
	// label; refs counts holds; registered (guarded by node.mu) is set
	// while the node holds the hub.
	label        string
	refs         atomic.Int64
	registered   bool
	reclaimMu    sync.Mutex
	reclaimTimer *time.Timer
}

// hubIndex is what a hub holds. A ViewHub stand-in shares its node's empty
// one, so that a lookup of a hub nobody uses allocates next to nothing: a
// stand-in never writes to it (Connect refuses it, and its tag and durable
// calls go to the hub of its name).
type hubIndex struct {
	conns  connShards
	groups setShards
	users  setShards
	tags   userTags  // SignalR user–group tags (usertags.go)
	seq    sequencer // orders durable sends and recovering joins per group
}

func newHubIndex() *hubIndex {
	x := &hubIndex{}
	x.seq.seed = maphash.MakeSeed()
	x.conns.init()
	x.groups.init()
	x.users.init()
	return x
}

// newHub returns an empty hub, not registered with n.
func newHub(n *Node, name string) *Hub {
	h := &Hub{name: name, node: n, hubIndex: newHubIndex(), label: OtherHubs}
	if in, ok := n.cfg.Broker.(Interest); ok {
		h.interest = in
		h.groups.first = func(group string) { in.WatchGroup(name, group) }
		h.groups.last = func(group string) { in.UnwatchGroup(name, group) }
	}
	return h
}

// standIn returns a hub called name that answers as an empty hub and is
// never registered (ViewHub).
func (n *Node) standIn(name string) *Hub {
	return &Hub{name: name, node: n, hubIndex: n.empty, label: OtherHubs}
}

// Name returns the hub's name, lower-cased.
func (h *Hub) Name() string { return h.name }

// MetricLabel returns the hub's value of the "hub" label of per-hub metrics:
// its name, or OtherHubs beyond the cap of the node's HubSeries. Vectors
// labelled with it should be tracked (Node.TrackHubSeries).
func (h *Hub) MetricLabel() string { return h.label }

// ValidGroupName reports whether g is a valid group name: 1 to 1024
// characters, not only whitespace.
func ValidGroupName(g string) bool {
	return g != "" && len(g) <= 1024 && strings.TrimSpace(g) != ""
}

// Connect registers a new session attached to link and joins its initial
// groups. It fails when a group name is invalid, the node is closing, or the
// hub is not the node's (ErrHubReclaimed: a ViewHub stand-in or a hub
// reclaimed while nobody held it; callers hold it with AcquireHub). The
// conn holds its hub until it ends.
func (h *Hub) Connect(info ConnInfo, link Link) (*Conn, error) {
	if h.node.isClosed() {
		return nil, ErrNodeClosed
	}
	for _, g := range info.Groups {
		if !ValidGroupName(g) {
			return nil, fmt.Errorf("%w: %s", ErrInvalidGroup, excerpt.Quote(g))
		}
	}
	if len(info.Groups) > h.node.cfg.Limits.MaxGroupsPerConn {
		return nil, ErrGroupLimit
	}
	if !h.hold() {
		return nil, fmt.Errorf("%w: %q", ErrHubReclaimed, h.name)
	}
	id := info.ID
	if id == "" {
		id = h.node.NewConnID()
	}
	c := &Conn{
		id:        id,
		hub:       h,
		userID:    info.UserID,
		protocol:  info.Protocol,
		dialect:   info.Dialect,
		codec:     info.Codec,
		created:   time.Now(),
		groups:    make(map[string]struct{}, len(info.Groups)),
		perms:     grantsFromRoles(info.Roles),
		state:     info.State,
		sent:      h.node.metrics.sent.WithLabelValues(h.label, info.Dialect),
		sentBytes: h.node.metrics.sentBytes.WithLabelValues(h.label, info.Dialect),
	}
	c.out.maxBytes = h.node.cfg.Limits.MaxQueueBytes
	c.out.link = link
	if info.Welcome != nil {
		c.Send(info.Welcome(c))
	}
	h.conns.add(c)
	if c.userID != "" {
		h.users.add(c.userID, c)
	}
	var added []string
	for _, g := range info.Groups {
		if ok, _ := h.addMember(c, g); ok {
			added = append(added, g)
		}
	}
	h.awaitGroups(added) // one NATS round trip in a cluster, whatever their number
	h.joinTagged(c)
	h.node.metrics.conns.WithLabelValues(h.label, c.dialect).Inc()
	if o := h.node.cfg.Observer; o != nil {
		o.ConnOpened(c)
	}
	return c, nil
}

// Resume reattaches link to the reliable session id; the caller has checked
// the reconnection token. protocol must be the session's subprotocol.
func (h *Hub) Resume(id, protocol string, link Link) (*Conn, error) {
	c := h.conns.get(id)
	if c == nil || !c.codec.Sequenced() || c.protocol != protocol || !c.attach(link) {
		return nil, ErrNotRecoverable
	}
	return c, nil
}

// removeConn takes c out of every index once; it reports whether this call
// did it.
func (h *Hub) removeConn(c *Conn, reason string) bool {
	c.memberMu.Lock()
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		c.memberMu.Unlock()
		return false
	}
	c.ended = true
	c.endReason = reason
	if c.recoverTimer != nil {
		c.recoverTimer.Stop()
	}
	groups := c.groupList
	c.groupList, c.groups = nil, nil
	c.mu.Unlock()
	for _, g := range groups {
		h.groups.remove(g, c)
	}
	c.memberMu.Unlock()
	if c.userID != "" {
		h.users.remove(c.userID, c)
	}
	h.conns.remove(c)
	c.endResults()
	h.node.metrics.conns.WithLabelValues(h.label, c.dialect).Dec()
	if fn := h.node.cfg.OnConnEnd; fn != nil {
		fn(c, reason)
	}
	if o := h.node.cfg.Observer; o != nil {
		o.ConnEnded(c, reason)
	}
	h.release() // the conn's hold, taken by Connect
	return true
}

// Conn returns the live (or recoverable) conn with id.
func (h *Hub) Conn(id string) (*Conn, error) {
	if c := h.conns.get(id); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrConnNotFound, id)
}

// ConnCount returns the number of sessions in the hub.
func (h *Hub) ConnCount() int { return h.conns.len() }

// join adds c to group; it reports ErrGroupLimit when c is in too many.
// With an Interest broker it returns once the broker receives the group's
// operations, so that a send accepted anywhere after the join returned
// reaches c (also when c was a member already: its first join may still
// be waiting).
func (h *Hub) join(c *Conn, group string) error {
	_, err := h.addMember(c, group)
	if err == nil {
		h.awaitGroups([]string{group})
	}
	return err
}

// awaitGroups waits, with an Interest broker, until it receives the ops of
// groups, which conns just joined: the first wait covers every subscription
// made before it, so the others return at once.
func (h *Hub) awaitGroups(groups []string) {
	if h.interest == nil {
		return
	}
	for _, g := range groups {
		h.interest.AwaitGroup(h.name, g)
	}
}

// addMember adds c to group; it reports whether c is new there.
// c.memberMu makes the conn's group set and the group index change together.
func (h *Hub) addMember(c *Conn, group string) (bool, error) {
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return false, nil
	}
	if _, ok := c.groups[group]; ok {
		c.mu.Unlock()
		return false, nil
	}
	if len(c.groupList) >= h.node.cfg.Limits.MaxGroupsPerConn {
		c.mu.Unlock()
		return false, ErrGroupLimit
	}
	c.groups[group] = struct{}{}
	c.groupList = append(c.groupList, group)
	c.mu.Unlock()
	h.groups.add(group, c)
	return true, nil
}

func (h *Hub) leave(c *Conn, group string) {
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	c.mu.Lock()
	if _, ok := c.groups[group]; !ok {
		c.mu.Unlock()
		return
	}
	delete(c.groups, group)
	if i := slices.Index(c.groupList, group); i >= 0 {
		last := len(c.groupList) - 1
		c.groupList[i] = c.groupList[last]
		c.groupList = c.groupList[:last]
	}
	c.mu.Unlock()
	h.groups.remove(group, c)
}

// JoinGroup adds conn id to group.
func (h *Hub) JoinGroup(c *Conn, group string) error {
	if !ValidGroupName(group) {
		return fmt.Errorf("%w: %s", ErrInvalidGroup, excerpt.Quote(group))
	}
	if c.hub != h { // a conn of another hub (or a stand-in) would corrupt the index
		return fmt.Errorf("%w: %q", ErrConnNotFound, c.id)
	}
	return h.join(c, group)
}

// LeaveGroup removes c from group.
func (h *Hub) LeaveGroup(c *Conn, group string) error {
	if !ValidGroupName(group) {
		return fmt.Errorf("%w: %s", ErrInvalidGroup, excerpt.Quote(group))
	}
	h.leave(c, group)
	return nil
}

// LeaveAllGroups removes c from every group.
func (h *Hub) LeaveAllGroups(c *Conn) {
	for _, g := range c.Groups() {
		h.leave(c, g)
	}
}

// AddUserToGroup adds every current conn of user to group; it reports
// ErrUserNotFound when the user has none.
func (h *Hub) AddUserToGroup(user, group string) error {
	if !ValidGroupName(group) {
		return fmt.Errorf("%w: %s", ErrInvalidGroup, excerpt.Quote(group))
	}
	conns := h.users.snapshot(user)
	if len(conns) == 0 {
		return fmt.Errorf("%w: %q", ErrUserNotFound, user)
	}
	var firstErr error
	for _, c := range conns {
		if err := h.join(c, group); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// RemoveUserFromGroup removes every conn of user from group ("" = all groups).
func (h *Hub) RemoveUserFromGroup(user, group string) {
	for _, c := range h.users.snapshot(user) {
		if group == "" {
			h.LeaveAllGroups(c)
		} else {
			h.leave(c, group)
		}
	}
}

// EachConn calls fn for every conn selected by filter-only target t (used by
// the bulk group operations). fn runs outside any lock.
func (h *Hub) EachConn(t Target, fn func(*Conn)) {
	var conns []*Conn
	m := matcher{excluded: t.Excluded, filter: t.Filter}
	h.conns.each(func(c *Conn) {
		if m.match(c) {
			conns = append(conns, c)
		}
	})
	for _, c := range conns {
		fn(c)
	}
}

// GroupExists reports whether group has members.
func (h *Hub) GroupExists(group string) bool { return h.groups.has(group) }

// UserExists reports whether user has a session.
func (h *Hub) UserExists(user string) bool { return h.users.has(user) }

// GroupMember is one entry of a group listing.
type GroupMember struct {
	ConnID string
	UserID string
}

// ListGroup returns up to limit members of group whose conn ids sort after
// after, in conn-id order, and whether more follow.
func (h *Hub) ListGroup(group, after string, limit int) (page []GroupMember, more bool) {
	conns := h.groups.snapshot(group)
	slices.SortFunc(conns, func(a, b *Conn) int { return strings.Compare(a.id, b.id) })
	i, _ := slices.BinarySearchFunc(conns, after, func(c *Conn, id string) int {
		if c.id <= id {
			return -1
		}
		return 1
	})
	conns = conns[i:]
	if len(conns) > limit {
		conns, more = conns[:limit], true
	}
	for _, c := range conns {
		page = append(page, GroupMember{ConnID: c.id, UserID: c.userID})
	}
	return page, more
}

// Send publishes m to t through the broker. A send to a group that keeps
// history is first made durable (m.Offset and m.Epoch are then set); it
// returns once the message is in the log and queued to the members.
func (h *Hub) Send(ctx context.Context, t Target, m *Message) error {
	if o := h.node.cfg.Observer; o != nil {
		o.Sent(h.name, t, m, nil)
	}
	op := &Op{Hub: h.name, Kind: OpSend, Target: t, Message: m}
	if t.Kind == ToGroup {
		if hist := h.history(t.Name); hist != nil {
			return h.sendDurable(ctx, hist, op)
		}
	}
	return h.node.cfg.Broker.Publish(ctx, op)
}

// SendStart is Send in two steps, for a caller that keeps several sends in
// flight in one order: it returns once the send has its place in that order
// (for a group that keeps history, once its record is appended and has its
// offset; any other send is published before it returns), and finish waits
// until it is done (durable and broadcast) and returns Send's result. Sends
// started one after the other to one group are broadcast in that order.
// finish must be called exactly once.
func (h *Hub) SendStart(ctx context.Context, t Target, m *Message) (finish func() error, err error) {
	if o := h.node.cfg.Observer; o != nil {
		o.Sent(h.name, t, m, nil)
	}
	op := &Op{Hub: h.name, Kind: OpSend, Target: t, Message: m}
	if t.Kind == ToGroup {
		if hist := h.history(t.Name); hist != nil {
			return h.beginDurable(ctx, hist, op)
		}
	}
	if err := h.node.cfg.Broker.Publish(ctx, op); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

// Publish sends m to group on behalf of the client conn from (noEcho leaves
// from out).
func (h *Hub) Publish(ctx context.Context, from *Conn, group string, m *Message, noEcho bool) error {
	op := &Op{Hub: h.name, Kind: OpSend, Target: Target{Kind: ToGroup, Name: group}, Message: m}
	if o := h.node.cfg.Observer; o != nil {
		o.Sent(h.name, op.Target, m, from)
	}
	if noEcho {
		op.SkipConn = from.id
	}
	if hist := h.history(group); hist != nil {
		return h.sendDurable(ctx, hist, op)
	}
	return h.node.cfg.Broker.Publish(ctx, op)
}

// CloseConns closes the conns of t with reason through the broker.
func (h *Hub) CloseConns(ctx context.Context, t Target, reason string) error {
	return h.node.cfg.Broker.Publish(ctx, &Op{Hub: h.name, Kind: OpClose, Target: t, Reason: reason})
}

// deliver performs op on this hub's local conns.
func (h *Hub) deliver(op *Op) {
	m := newMatcher(op)
	var act func(*Conn)
	switch op.Kind {
	case OpSend:
		h.node.metrics.sends.WithLabelValues(h.label, op.Target.Kind.String()).Inc()
		msg := op.Message
		act = func(c *Conn) {
			if m.match(c) {
				c.deliver(msg)
			}
		}
	case OpClose:
		// Closing takes shard locks; collect first, close outside.
		var victims []*Conn
		h.each(op.Target, func(c *Conn) {
			if m.match(c) {
				victims = append(victims, c)
			}
		})
		for _, c := range victims {
			c.Close(op.Reason)
		}
		return
	default:
		return
	}
	h.each(op.Target, act)
}

// each calls fn for every conn the target's kind and name select.
func (h *Hub) each(t Target, fn func(*Conn)) {
	switch t.Kind {
	case ToAll:
		h.conns.each(fn)
	case ToGroup:
		h.groups.each(t.Name, fn)
	case ToUser:
		h.users.each(t.Name, fn)
	case ToConn:
		if c := h.conns.get(t.Name); c != nil {
			fn(c)
		}
	}
}
