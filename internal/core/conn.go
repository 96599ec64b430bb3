package core

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConnInfo describes a conn at the moment it connects.
type ConnInfo struct {
	ID       string   // from Node.NewConnID when known before connecting; "" = new
	UserID   string   // "" for anonymous
	Roles    []string // as the token or connect handler gave them
	Groups   []string // joined on connect, without a permission check
	Protocol string   // the negotiated subprotocol, "" for none
	Dialect  string   // metrics label: "raw", "json", "json.reliable", …
	Codec    Codec
	State    string // opaque connection state set by the connect handler
	// Welcome, if set, builds the first frame the conn gets (e.g. the
	// connected system message); it is queued before the conn can receive
	// anything else.
	Welcome func(c *Conn) Frame
	// OnConnect, if set, is called once the conn is made (after Welcome),
	// before it is registered, joins its initial groups or can be reached
	// by anything else: the dialect queues its connected event there, so
	// that it comes before every membership event of the conn (Membership)
	// and its disconnected event.
	OnConnect func(c *Conn)
}

// Conn is one client session. For reliable protocols it outlives its socket:
// the Link changes on recovery, the Conn stays.
type Conn struct {
	id       string
	hub      *Hub
	userID   string
	protocol string
	dialect  string
	codec    Codec
	created  time.Time

	out       outbox
	results   results            // invocations waiting for the client's answer
	sent      prometheus.Counter // messages enqueued, by hub and dialect
	sentBytes prometheus.Counter // their payload bytes

	// memberMu serializes changes of group membership (the conn's set and
	// the hub's index together). Lock order: memberMu → shard → mu.
	memberMu sync.Mutex

	// mu guards the fields below.
	mu           sync.Mutex
	groups       map[string]struct{}
	groupList    []string // the keys of groups, for filters
	perms        [numPerms]grants
	acks         ackSet
	recoverTimer *time.Timer
	endReason    string
	ended        bool
	state        string    // opaque upstream connection state (ce-connectionState)
	gs           connState // group state entries and subscriptions (groupstate.go)
}

// State returns the connection state the event handler last set.
func (c *Conn) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// SetState replaces the connection state.
func (c *Conn) SetState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// ID returns the conn's id, unique across nodes.
func (c *Conn) ID() string { return c.id }

// UserID returns the conn's user id, "" when anonymous.
func (c *Conn) UserID() string { return c.userID }

// Hub returns the hub the conn belongs to.
func (c *Conn) Hub() *Hub { return c.hub }

// Protocol returns the negotiated subprotocol.
func (c *Conn) Protocol() string { return c.protocol }

// Codec returns the conn's codec.
func (c *Conn) Codec() Codec { return c.codec }

// FilterUserID, FilterConnectionID, FilterGroups and FilterProtocol make a
// Conn a filter subject. FilterGroups must be called with c.mu held.
func (c *Conn) FilterUserID() (string, bool) { return c.userID, c.userID != "" }

// FilterConnectionID implements odata.Subject.
func (c *Conn) FilterConnectionID() string { return c.id }

// FilterGroups implements odata.Subject; the caller holds c.mu.
func (c *Conn) FilterGroups() []string { return c.groupList }

// FilterProtocol implements odata.Subject.
func (c *Conn) FilterProtocol() string { return c.protocol }

// Groups returns a copy of the groups the conn is in.
func (c *Conn) Groups() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.groupList...)
}

// InGroup reports whether the conn is a member of group.
func (c *Conn) InGroup(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.groups[group]
	return ok
}

// Can reports whether the conn holds perm over group ("" = every group).
func (c *Conn) Can(perm Permission, group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if group == "" {
		return c.perms[perm].all && len(c.perms[perm].revoked) == 0
	}
	return c.perms[perm].allows(group)
}

// Grant gives the conn perm over group ("" = every group).
func (c *Conn) Grant(perm Permission, group string) {
	c.mu.Lock()
	c.perms[perm].grant(group)
	c.mu.Unlock()
}

// Revoke takes perm over group ("" = every group) from the conn.
func (c *Conn) Revoke(perm Permission, group string) {
	c.mu.Lock()
	c.perms[perm].revoke(group)
	c.mu.Unlock()
}

// SeenAck records a client request id and reports whether it was seen
// before on this session (the request is then a duplicate).
func (c *Conn) SeenAck(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acks.seen(id)
}

// Ack drops buffered data messages up to seq (sequenced protocols).
func (c *Conn) Ack(seq uint64) { c.out.ack(seq) }

// Send queues a control frame (ack, pong, system message) for this conn.
// Control frames are not sequenced and not replayed.
func (c *Conn) Send(f Frame) {
	l, err := c.out.pushControl(f)
	c.afterPush(l, err)
}

// Deliver queues the data message m for this conn alone (an event handler's
// answer); like a send, it is sequenced and replayed on reliable protocols.
func (c *Conn) Deliver(m *Message) { c.deliver(m) }

// DeliverReply queues m, the answer to one of the client's own requests (a
// Web PubSub invokeResponse), for this conn alone. Like Deliver it is
// sequenced and replayed on reliable protocols, but at most keep such
// replies stay in the replay buffer unacknowledged: beyond that the oldest
// is dropped from it (not from the queue). A client that does not read the
// sequence id of replies (the official JavaScript client) never acknowledges
// them by themselves, only with a later data message; without this bound
// such a client that only invokes would fill its replay buffer and be
// closed. keep below 1 counts as 1.
func (c *Conn) DeliverReply(m *Message, keep int) { c.push(m, true, max(keep, 1)) }

// deliver queues m for this conn.
func (c *Conn) deliver(m *Message) { c.push(m, false, 0) }

func (c *Conn) push(m *Message, reply bool, keepReplies int) {
	f := m.encode(c.codec)
	if f.Data == nil {
		return // the codec has no form of m for this protocol
	}
	it := Item{Body: f.Data, Binary: f.Binary, Accepted: m.Accepted, reply: reply}
	if !m.Expires.IsZero() {
		it.Expires = m.Expires.UnixNano()
	}
	l, err := c.out.push(it, c.codec.Sequenced(), &c.hub.node.cfg.Limits, keepReplies)
	c.afterPush(l, err)
	if err == nil {
		c.sent.Inc()
		c.sentBytes.Add(float64(len(f.Data)))
	}
}

func (c *Conn) afterPush(l Link, err error) {
	switch {
	case err == ErrSlowConsumer:
		c.shed("slow consumer: outbound queue exceeded its limit")
	case err == ErrReplayOverflow:
		c.shed("unacknowledged message buffer full")
	case l != nil:
		l.Wake()
	}
}

// shed ends an overflowing session. It may run under a shard's read lock
// (during a fan-out), so it stops the outbox and closes the link at once but
// leaves the index updates, which take shard write locks, to a goroutine.
func (c *Conn) shed(reason string) {
	c.hub.node.metrics.slowConsumers.WithLabelValues(c.hub.label).Inc()
	if l := c.out.end(false); l != nil {
		l.Close(CloseSlowConsumer, reason)
	}
	go c.hub.removeConn(c, reason)
}

// Drain moves the conn's queued items to dst if l is the conn's current
// link; the transport's writer calls it.
func (c *Conn) Drain(l Link, dst []Item) []Item { return c.out.drain(l, dst) }

// Close codes the core asks transports to use.
const (
	CloseNormal       = 1000
	CloseGoingAway    = 1001
	ClosePolicy       = 1008 // also: reliable session cannot be recovered
	CloseSlowConsumer = 1008
)

// Close ends the session on the server's initiative: the client gets the
// protocol's disconnected notice with reason, then the socket closes. The
// session cannot be recovered afterwards.
func (c *Conn) Close(reason string) { c.closeWith(CloseNormal, reason) }

func (c *Conn) closeWith(code int, reason string) {
	f, ok := c.codec.EncodeDisconnected(reason)
	if g, isGA := c.codec.(GoingAwayEncoder); isGA && code == CloseGoingAway {
		f, ok = g.EncodeGoingAway(reason), true
	}
	if ok {
		c.Send(f)
	}
	if !c.hub.removeConn(c, reason) {
		return
	}
	if l := c.out.end(true); l != nil {
		l.Close(code, reason)
	}
}

// abort ends the session at once, dropping what is queued.
func (c *Conn) abort(code int, reason string) {
	if !c.hub.removeConn(c, reason) {
		return
	}
	if l := c.out.end(false); l != nil {
		l.Close(code, reason)
	}
}

// attach makes l the conn's socket and reports whether it could: an ended
// session cannot be resumed. For a recovered reliable session every
// unacknowledged data message is queued again, in order; a previous socket
// is closed.
func (c *Conn) attach(l Link) bool {
	c.mu.Lock()
	if c.recoverTimer != nil {
		c.recoverTimer.Stop()
		c.recoverTimer = nil
	}
	c.mu.Unlock()
	r, _ := c.codec.(Resumer)
	prev, ok := c.out.attach(l, c.codec.Sequenced(), r)
	if !ok {
		return false
	}
	if prev != nil && prev != l {
		prev.Close(CloseNormal, "replaced by a new connection of the same session")
	}
	l.Wake()
	return true
}

// Detach tells the conn its socket l is gone with reason. A sequenced
// session waits for the client to come back within the recovery window;
// any other session ends.
func (c *Conn) Detach(l Link, reason string) {
	if !c.out.detach(l) {
		return
	}
	window := c.hub.node.cfg.RecoveryWindow
	if !c.codec.Sequenced() || window <= 0 {
		c.abort(CloseNormal, reason)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.recoverTimer = time.AfterFunc(window, func() {
		c.abort(CloseNormal, "recovery window expired: "+reason)
	})
}

// End ends the session at once if l is still its socket (the client said
// goodbye): no recovery window.
func (c *Conn) End(l Link, reason string) {
	if !c.out.detach(l) {
		return
	}
	c.abort(CloseNormal, reason)
}

// Linked reports whether the session has a socket now (a reliable session
// waiting for its client to recover has none).
func (c *Conn) Linked() bool {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.out.link != nil
}

// Ended reports whether the session is over.
func (c *Conn) Ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// ackSet remembers the last ackWindow distinct request ids a session used,
// to answer repeats with Duplicate. It remembers ids in the order they were
// first used, whatever their values: a client that jumps to a huge id (2^64-1)
// does not make the lower ids it uses next look like repeats, and only an id
// seen among the last ackWindow distinct ones is a duplicate. Memory grows
// with the ids used, up to ackWindow of them (a ring and a map, about 100 KiB).
type ackSet struct {
	ids  map[uint64]struct{}
	ring []uint64 // ids in first-use order; the oldest at next once full
	next int      // where the next id goes once len(ring) == ackWindow
}

const ackWindow = 4096

func (a *ackSet) seen(id uint64) bool {
	if _, ok := a.ids[id]; ok {
		return true
	}
	if a.ids == nil {
		a.ids = make(map[uint64]struct{})
	}
	if len(a.ring) < ackWindow {
		a.ring = append(a.ring, id)
	} else {
		delete(a.ids, a.ring[a.next])
		a.ring[a.next] = id
		a.next = (a.next + 1) % ackWindow
	}
	a.ids[id] = struct{}{}
	return false
}

// AppendHead appends the per-conn head of a sequenced item; the transport's
// writer calls it.
func (c *Conn) AppendHead(dst []byte, seq uint64, body []byte) []byte {
	if seq == 0 {
		return dst
	}
	return c.codec.AppendHead(dst, seq, body)
}
