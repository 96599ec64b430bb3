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

	"github.com/prometheus/client_golang/prometheus"

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
	// members is the node's Membership when it observes this hub, else nil.
	members Membership
	// notify is the hub's member notifications, nil when none are
	// configured (notify.go).
	notify *presenceTracker

	// Reclaim (reclaim.go): label is the hub's value of the "hub" metric
	// label; refs counts holds; registered (guarded by node.mu) is set
	// while the node holds the hub.
	label        string
	refs         atomic.Int64
	registered   bool
	reclaimMu    sync.Mutex
	reclaimTimer *time.Timer

	// sends caches the series of the sends counter per target kind (deliver counts every op).
	sends [4]atomic.Pointer[labelledCounter]
}

// labelledCounter is a counter series and the hub label it was looked up with.
type labelledCounter struct {
	label string
	c     prometheus.Counter
}

// sendsCounter returns the series of the sends counter of target kind k, looked up once per
// hub label rather than by its label values at every op.
func (h *Hub) sendsCounter(k TargetKind) prometheus.Counter {
	if lc := h.sends[k].Load(); lc != nil && lc.label == h.label {
		return lc.c
	}
	lc := &labelledCounter{label: h.label, c: h.node.metrics.sends.WithLabelValues(h.label, k.String())}
	h.sends[k].Store(lc)
	return lc.c
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
	if m := n.cfg.Membership; m != nil && m.Observes(name) {
		h.members = m
	}
	// The hub's label is set when the node registers it, before any conn,
	// and never changes after: the gauges are looked up once.
	var users, groups atomic.Pointer[prometheus.Gauge]
	gauge := func(p *atomic.Pointer[prometheus.Gauge], vec *prometheus.GaugeVec) prometheus.Gauge {
		if g := p.Load(); g != nil {
			return *g
		}
		g := vec.WithLabelValues(h.label, n.cfg.Namespace)
		p.Store(&g)
		return g
	}
	h.users.counted = func(d float64) { gauge(&users, n.metrics.users).Add(d) }
	h.groups.counted = func(d float64) { gauge(&groups, n.metrics.groups).Add(d) }
	in, _ := n.cfg.Broker.(Interest)
	h.interest = in
	if pn := n.cfg.PresenceNotify; pn != nil {
		h.notify = newPresenceTracker(h, pn)
	}
	if in != nil || h.notify != nil {
		h.groups.first = func(group string) {
			if in != nil {
				in.WatchGroup(name, group)
			}
			if h.notify != nil {
				h.notify.watch(group)
			}
		}
		h.groups.last = func(group string) {
			if in != nil {
				in.UnwatchGroup(name, group)
			}
			if h.notify != nil {
				h.notify.unwatch(group)
			}
		}
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
	if info.OnConnect != nil {
		info.OnConnect(c)
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
	h.joinedGroups(c, added)
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
		if h.members != nil {
			h.members.Left(c, g)
		}
	}
	c.memberMu.Unlock()
	for _, g := range groups {
		h.leftGroup(c, g)
	}
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
	added, err := h.addMember(c, group)
	if err == nil {
		h.awaitGroups([]string{group})
	}
	if added {
		h.joinedGroups(c, []string{group})
	}
	return err
}

// joinedGroups tells the member notifications that c joined groups (new
// memberships), once the broker receives their ops.
func (h *Hub) joinedGroups(c *Conn, groups []string) {
	if h.notify != nil && len(groups) > 0 {
		h.notify.joined(c, groups)
	}
}

// leftGroup drops c's state entry and subscription in group and tells the
// member notifications that c left it.
func (h *Hub) leftGroup(c *Conn, group string) {
	h.dropState(c, group)
	if h.notify != nil {
		h.notify.left(c, group)
	}
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
	if h.members != nil {
		h.members.Joined(c, group)
	}
	return true, nil
}

func (h *Hub) leave(c *Conn, group string) {
	c.memberMu.Lock()
	c.mu.Lock()
	if _, ok := c.groups[group]; !ok {
		c.mu.Unlock()
		c.memberMu.Unlock()
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
	if h.members != nil {
		h.members.Left(c, group)
	}
	c.memberMu.Unlock()
	h.leftGroup(c, group)
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
	// Connected is when the conn connected (ReqUserConns only; zero in
	// group listings).
	Connected time.Time
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

// UserConns returns up to limit conns of user on every node, oldest first
// (a tie broken by conn id), and whether the user has more. A user's
// connections are counted where they are: each node answers for its own.
func (h *Hub) UserConns(ctx context.Context, user string, limit int) ([]GroupMember, bool, error) {
	r, err := h.Do(ctx, Request{Kind: ReqUserConns, User: user, Limit: limit})
	if err != nil {
		return nil, false, err
	}
	return r.Members, r.More, r.Err
}

// localUserConns returns up to limit of this node's conns of user, oldest
// first, and whether it has more.
func (h *Hub) localUserConns(user string, limit int) ([]GroupMember, bool) {
	conns := h.users.snapshot(user)
	out := make([]GroupMember, 0, len(conns))
	for _, c := range conns {
		out = append(out, GroupMember{ConnID: c.id, UserID: c.userID, Connected: c.created})
	}
	slices.SortFunc(out, compareAge)
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// Send publishes m to t through the broker. A send to a group that keeps
// history is first made durable (m.Offset and m.Epoch are then set); it
// returns once the message is in the log and queued to the members.
func (h *Hub) Send(ctx context.Context, t Target, m *Message) error {
	accept(m)
	if o := h.node.cfg.Observer; o != nil {
		o.Sent(h.name, t, m, nil)
	}
	op := &Op{Hub: h.name, Kind: OpSend, Target: t, Message: m}
	if t.Kind == ToGroup {
		if hist := h.history(t.Name); hist != nil {
			return h.sendDurable(ctx, hist, op)
		}
	}
	return h.publish(ctx, op)
}

// accept stamps m with the time its send was accepted, once (a retried
// send keeps its first).
func accept(m *Message) {
	if m.Accepted == 0 {
		m.Accepted = time.Now().UnixNano()
	}
}

// publish hands op to the broker, in a fan-out span when ctx is traced.
func (h *Hub) publish(ctx context.Context, op *Op) error {
	ctx, span := startSpan(ctx, "switchboard.fanout", op)
	err := h.node.cfg.Broker.Publish(ctx, op)
	endSpan(span, err)
	return err
}

// SendStart is Send in two steps, for a caller that keeps several sends in
// flight in one order: it returns once the send has its place in that order
// (for a group that keeps history, once its record is appended and has its
// offset; any other send is published before it returns), and finish waits
// until it is done (durable and broadcast) and returns Send's result. Sends
// started one after the other to one group are broadcast in that order.
// finish must be called exactly once.
func (h *Hub) SendStart(ctx context.Context, t Target, m *Message) (finish func() error, err error) {
	accept(m)
	if o := h.node.cfg.Observer; o != nil {
		o.Sent(h.name, t, m, nil)
	}
	op := &Op{Hub: h.name, Kind: OpSend, Target: t, Message: m}
	if t.Kind == ToGroup {
		if hist := h.history(t.Name); hist != nil {
			return h.beginDurable(ctx, hist, op)
		}
	}
	if err := h.publish(ctx, op); err != nil {
		return nil, err
	}
	return func() error { return nil }, nil
}

// Publish sends m to group on behalf of the client conn from (noEcho leaves
// from out).
func (h *Hub) Publish(ctx context.Context, from *Conn, group string, m *Message, noEcho bool) error {
	accept(m)
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

// KeepsHistory reports whether group keeps history (its sends are durable).
func (h *Hub) KeepsHistory(group string) bool { return h.history(group) != nil }

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
		h.sendsCounter(op.Target.Kind).Inc()
		msg := op.Message
		act = func(c *Conn) {
			if m.match(c) {
				c.deliver(msg)
			}
		}
	case OpPresence:
		if h.notify != nil {
			h.notify.deliverOp(op)
		}
		return
	case OpGroupState:
		if op.Message != nil && op.Message.Type == GroupState && op.Target.Kind == ToGroup {
			h.deliverState(op.Message)
		}
		return
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
