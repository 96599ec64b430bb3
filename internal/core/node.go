package core

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/metricreg"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Limits bound what one conn may hold. Zero fields take the defaults below.
type Limits struct {
	MaxQueueBytes    int // queued outbound bytes before a slow-consumer close; default 4 MiB
	MaxGroupsPerConn int // default 1000
	ReplayMessages   int // unacknowledged messages kept for a reliable session; default 1000
	ReplayBytes      int // … and their bytes; default 16 MiB
}

// Config configures a Node. Zero fields take defaults.
type Config struct {
	NodeID         string        // short id carried in conn ids; default random
	Broker         Broker        // nil: an in-process broker of this node's own
	Limits         Limits        //
	RecoveryWindow time.Duration // how long a reliable session waits for its client; default 30s, negative: never
	Logger         *slog.Logger  // default: discard
	Registerer     prometheus.Registerer
	// OnConnEnd, if set, is called once when a session ends for good.
	OnConnEnd func(c *Conn, reason string)
	// History, if set, keeps the streams of the groups that keep history.
	History History
	// Membership, if set, is told of the group membership changes of this
	// node's conns in the hubs it observes (membership.go).
	Membership Membership
	// Observer, if set, is told of conns opening and ending and of the
	// sends made on this node (the dashboard's live trace). Nil costs
	// one nil check per event.
	Observer Observer

	// MaxHubs caps the hubs the node holds at once; creating one more fails
	// with ErrHubLimit. Default 10000.
	MaxHubs int
	// HubIdleTimeout is how long a hub with no conns and no state (tags,
	// durable turns) is kept before it is reclaimed. Default 10s.
	HubIdleTimeout time.Duration
	// HubSeries bounds the hub labels of per-hub metrics; nodes sharing a
	// registry should share one. Default: NewHubSeries(DefaultMaxHubSeries).
	HubSeries *HubSeries
	// PresenceNotify, if set, tells the members of the groups it matches
	// when users join and leave (notify.go).
	PresenceNotify *PresenceNotify
	// Namespace is the "namespace" label of the node's presence gauges
	// (webpubsub, signalr). Default "webpubsub".
	Namespace string
}

func (c *Config) setDefaults() error {
	if c.Broker == nil {
		c.Broker = &localBroker{}
	}
	if c.NodeID == "" {
		var b [3]byte
		rand.Read(b[:])
		c.NodeID = hex.EncodeToString(b[:])
	}
	if strings.ContainsAny(c.NodeID, "_/?#% ") {
		return fmt.Errorf("core: node id %q must be URL-safe and contain no '_'", c.NodeID)
	}
	l := &c.Limits
	if l.MaxQueueBytes <= 0 {
		l.MaxQueueBytes = 4 << 20
	}
	if l.MaxGroupsPerConn <= 0 {
		l.MaxGroupsPerConn = 1000
	}
	if l.ReplayMessages <= 0 {
		l.ReplayMessages = 1000
	}
	if l.ReplayBytes <= 0 {
		l.ReplayBytes = 16 << 20
	}
	if c.RecoveryWindow == 0 {
		c.RecoveryWindow = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.MaxHubs <= 0 {
		c.MaxHubs = 10000
	}
	if c.HubIdleTimeout <= 0 {
		c.HubIdleTimeout = 10 * time.Second
	}
	if c.Namespace == "" {
		c.Namespace = "webpubsub"
	}
	if c.HubSeries == nil {
		c.HubSeries = NewHubSeries(DefaultMaxHubSeries)
	}
	return nil
}

// Observer watches a node's conns and sends. Its methods are called on the
// caller's goroutine, outside core's locks, and must return quickly.
type Observer interface {
	// ConnOpened: c was connected (its initial groups joined).
	ConnOpened(c *Conn)
	// ConnEnded: c ended for good with reason.
	ConnEnded(c *Conn, reason string)
	// Sent: m was sent to t in hub by a server call (REST) or, with from
	// set, published to a group by the client conn from.
	Sent(hub string, t Target, m *Message, from *Conn)
}

// Broker carries operations to every node that may hold a recipient. The
// in-process broker hands them straight back to this node; a clustered one
// publishes them to the other nodes too.
type Broker interface {
	// Attach registers the node that receives operations. NewNode calls it once.
	Attach(d Deliverer)
	// Publish sends op to the attached node(s).
	Publish(ctx context.Context, op *Op) error
}

// Interest is an optional interface of a Broker that carries a group's
// operations only to the nodes with members of it (a cluster's), found by
// type assertion. The node calls WatchGroup when its first member of a
// group joins and UnwatchGroup when its last one leaves, both under the
// group's lock, so the calls for one group alternate and never cross; they
// must not block. After every join that added a member, the node calls
// AwaitGroup, which returns (bounded) once the broker is known to receive
// the group's operations: a send accepted anywhere after the join returned
// reaches the new member.
type Interest interface {
	WatchGroup(hub, group string)
	UnwatchGroup(hub, group string)
	AwaitGroup(hub, group string)
}

// Deliverer receives operations from a Broker.
type Deliverer interface {
	Deliver(op *Op)
}

// Node is the set of hubs of one server. A hub is made by the first
// authenticated use that needs it (AcquireHub) and reclaimed once it has
// been idle for Config.HubIdleTimeout (reclaim.go); lookups (LookupHub,
// ViewHub) never make one.
type Node struct {
	cfg     Config
	metrics *metrics
	log     *slog.Logger

	// mu guards the hub map and each hub's registered flag; a hub's
	// reference count is raised only under it (read-locked) and checked for
	// reclaim only under it (write-locked), so a hub in use is never
	// reclaimed and a reclaimed hub is never used again.
	mu     sync.RWMutex
	hubs   map[string]*Hub
	closed bool

	empty *hubIndex // shared by the ViewHub stand-ins; never written
}

// NewNode returns a node that sends through cfg.Broker (nil: in process).
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	cfg.HubSeries.Track(m.conns, m.sent, m.sentBytes, m.slowConsumers, m.sends, m.users, m.groups)
	n := &Node{cfg: cfg, metrics: m, log: cfg.Logger, hubs: make(map[string]*Hub), empty: newHubIndex()}
	cfg.Broker.Attach(n)
	if dh, ok := cfg.History.(DeliveringHistory); ok {
		dh.Attach(n)
	}
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Limits returns the effective limits.
func (n *Node) Limits() Limits { return n.cfg.Limits }

// ValidHubName reports whether name is a valid hub name: a letter, then up to 127 letters,
// digits and `_`, backquote, `,`, `.`, `[` and `]` (the regexp
// ^[A-Za-z][A-Za-z0-9_`,.\[\]]{0,127}$, checked byte by byte: it runs for every send, and
// for every record of a connector).
func ValidHubName(name string) bool {
	if len(name) == 0 || len(name) > 128 || !isLetter(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		switch c := name[i]; {
		case isLetter(c), '0' <= c && c <= '9':
		case c == '_', c == '`', c == ',', c == '.', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// HubKey validates a hub name and returns its key: hub names are
// case-insensitive, and a hub's Name is its key.
func HubKey(name string) (string, error) {
	if !ValidHubName(name) {
		return "", fmt.Errorf("%w: %s", ErrInvalidHub, excerpt.Quote(name))
	}
	return strings.ToLower(name), nil
}

// LookupHub returns the hub called name (case-insensitive), or nil when the
// node holds none; it makes nothing.
func (n *Node) LookupHub(name string) (*Hub, error) {
	key, err := HubKey(name)
	if err != nil {
		return nil, err
	}
	return n.lookupHub(key), nil
}

// ViewHub returns the hub called name, or, when the node holds none, an
// empty stand-in that is not kept: it answers as a hub without conns, its
// sends and closes reach the other nodes through the broker, and the calls
// that keep state (TagUserGroup, durable sends) act on the hub of its name,
// made then. It is how an operation that can answer without a hub (an
// existence check, a listing, a close) reads one without making it.
func (n *Node) ViewHub(name string) (*Hub, error) {
	key, err := HubKey(name)
	if err != nil {
		return nil, err
	}
	if h := n.lookupHub(key); h != nil {
		return h, nil
	}
	return n.standIn(key), nil
}

// AcquireHub returns the hub called name, making it on first use, held until
// release is called: a held hub is never reclaimed. Callers acquire a hub
// only once the client is authenticated, and release it once its conn is
// connected (a conn holds its hub itself). It fails with ErrInvalidHub, or
// ErrHubLimit when the node holds Config.MaxHubs hubs.
func (n *Node) AcquireHub(name string) (h *Hub, release func(), err error) {
	key, err := HubKey(name)
	if err != nil {
		return nil, nil, err
	}
	if h, err = n.acquire(key); err != nil {
		return nil, nil, err
	}
	return h, h.release, nil
}

// Hub returns the hub called name, making it on first use, without holding
// it: once idle for Config.HubIdleTimeout it may be reclaimed, and Connect
// on a reclaimed hub fails with ErrHubReclaimed. Servers use AcquireHub.
func (n *Node) Hub(name string) (*Hub, error) {
	h, release, err := n.AcquireHub(name)
	if err != nil {
		return nil, err
	}
	release()
	return h, nil
}

// HubCount returns the number of hubs the node holds.
func (n *Node) HubCount() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.hubs)
}

// TrackHubSeries adds metric vectors with a "hub" label whose series are
// deleted when their hub is reclaimed (see HubSeries).
func (n *Node) TrackHubSeries(vecs ...SeriesDeleter) { n.cfg.HubSeries.Track(vecs...) }

// lookupHub returns the hub with key if it exists.
func (n *Node) lookupHub(key string) *Hub {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.hubs[key]
}

// Hubs returns the names of the hubs in use.
func (n *Node) Hubs() []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	names := make([]string, 0, len(n.hubs))
	for k := range n.hubs {
		names = append(names, k)
	}
	return names
}

// Deliver performs op on this node's conns. Brokers call it.
func (n *Node) Deliver(op *Op) {
	n.mu.RLock()
	h := n.hubs[strings.ToLower(op.Hub)]
	if h != nil {
		h.refs.Add(1) // held: its series are not deleted under the delivery
	}
	n.mu.RUnlock()
	if h == nil {
		return
	}
	h.deliver(op)
	h.release()
}

// NodeGone tells the node that the cluster's node id left (it missed its
// heartbeats): its users leave the member notifications' groups. Clustered
// brokers call it.
func (n *Node) NodeGone(id string) {
	n.mu.RLock()
	hubs := make([]*Hub, 0, len(n.hubs))
	for _, h := range n.hubs {
		if h.notify != nil {
			hubs = append(hubs, h)
		}
	}
	n.mu.RUnlock()
	for _, h := range hubs {
		h.notify.nodeGone(id)
	}
}

// Shutdown closes every conn with 1001 and reason, capped in parallelism,
// and refuses new ones. It returns when all are closed or ctx is done.
func (n *Node) Shutdown(ctx context.Context, reason string) error {
	n.mu.Lock()
	n.closed = true
	hubs := make([]*Hub, 0, len(n.hubs))
	for _, h := range n.hubs {
		hubs = append(hubs, h)
	}
	n.mu.Unlock()
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for _, h := range hubs {
		var conns []*Conn
		h.conns.each(func(c *Conn) { conns = append(conns, c) })
		for _, c := range conns {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c.closeWith(CloseGoingAway, reason)
			}()
		}
	}
	wg.Wait()
	return nil
}

func (n *Node) isClosed() bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.closed
}

// NewConnID returns a new connection id, unique across nodes: the node id and
// 128 random bits.
func (n *Node) NewConnID() string {
	var b [16]byte
	rand.Read(b[:])
	return n.cfg.NodeID + "_" + base64.RawURLEncoding.EncodeToString(b[:])
}

type metrics struct {
	hubs           prometheus.Gauge
	hubEvents      *prometheus.CounterVec
	conns          *prometheus.GaugeVec
	sent           *prometheus.CounterVec
	sentBytes      *prometheus.CounterVec
	slowConsumers  *prometheus.CounterVec
	sends          *prometheus.CounterVec
	users          *prometheus.GaugeVec
	groups         *prometheus.GaugeVec
	presenceEvents *prometheus.CounterVec
	presenceErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		hubs: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "switchboard", Name: "hubs",
			Help: "Hubs held by the nodes (both namespaces).",
		}),
		hubEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "hub", Name: "events_total",
			Help: "Hubs made (created), reclaimed once idle (reclaimed) and refused at limits.max_hubs (limit).",
		}, []string{"event"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "switchboard", Name: "connections",
			Help: "Open client sessions, by hub and dialect.",
		}, []string{"hub", "dialect"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Name: "messages_out_total",
			Help: "Data messages queued to clients, by hub and dialect.",
		}, []string{"hub", "dialect"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Name: "message_bytes_out_total",
			Help: "Encoded bytes of data messages queued to clients, by hub and dialect.",
		}, []string{"hub", "dialect"}),
		slowConsumers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "conn", Name: "slow_consumer_closes_total",
			Help: "Sessions closed because their outbound or replay buffer overflowed, by hub.",
		}, []string{"hub"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Name: "sends_total",
			Help: "Send operations delivered by this node, by hub and target kind.",
		}, []string{"hub", "target"}),
		users: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "presence", Name: "users",
			Help: "Distinct user ids with a session on this node, by hub and namespace (a user on several nodes counts on each).",
		}, []string{"hub", "namespace"}),
		groups: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "presence", Name: "groups",
			Help: "Groups with a member on this node, by hub and namespace.",
		}, []string{"hub", "namespace"}),
		presenceEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "presence", Name: "notifications_total",
			Help: "Member notifications (a user joined or left a notified group) delivered to this node's members, by event.",
		}, []string{"event"}),
		presenceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "presence", Name: "errors_total",
			Help: "Presence changes or group state removals not published, or groups whose presence was not read from every node (NATS down, a node not answering): members may miss or get an extra notification, subscribers keep a state entry.",
		}),
	}
	// A second node on the same registry (the SignalR namespace) shares
	// the collectors; the dialect label tells their conns apart.
	var err error
	if m.conns, err = metricreg.Register(reg, "core", m.conns); err != nil {
		return nil, err
	}
	if m.hubs, err = metricreg.Register(reg, "core", m.hubs); err != nil {
		return nil, err
	}
	for _, g := range []**prometheus.GaugeVec{&m.users, &m.groups} {
		if *g, err = metricreg.Register(reg, "core", *g); err != nil {
			return nil, err
		}
	}
	if m.presenceErrors, err = metricreg.Register(reg, "core", m.presenceErrors); err != nil {
		return nil, err
	}
	for _, c := range []**prometheus.CounterVec{&m.hubEvents, &m.sent, &m.sentBytes, &m.slowConsumers, &m.sends, &m.presenceEvents} {
		if *c, err = metricreg.Register(reg, "core", *c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
