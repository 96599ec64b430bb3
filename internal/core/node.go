package core

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/metricreg"
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
	return nil
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

// Deliverer receives operations from a Broker.
type Deliverer interface {
	Deliver(op *Op)
}

// Node is the set of hubs of one server.
type Node struct {
	cfg     Config
	metrics *metrics
	log     *slog.Logger

	mu     sync.RWMutex
	hubs   map[string]*Hub
	closed bool
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
	n := &Node{cfg: cfg, metrics: m, log: cfg.Logger, hubs: make(map[string]*Hub)}
	cfg.Broker.Attach(n)
	return n, nil
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Limits returns the effective limits.
func (n *Node) Limits() Limits { return n.cfg.Limits }

var hubName = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")

// ValidHubName reports whether name is a valid hub name.
func ValidHubName(name string) bool { return hubName.MatchString(name) }

// Hub returns the hub called name (case-insensitive), creating it on first use.
func (n *Node) Hub(name string) (*Hub, error) {
	if !ValidHubName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidHub, name)
	}
	key := strings.ToLower(name)
	n.mu.RLock()
	h := n.hubs[key]
	n.mu.RUnlock()
	if h != nil {
		return h, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if h = n.hubs[key]; h == nil {
		h = newHub(n, key)
		n.hubs[key] = h
	}
	return h, nil
}

// lookupHub returns the hub called name if it exists.
func (n *Node) lookupHub(name string) *Hub {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.hubs[strings.ToLower(name)]
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
	h := n.lookupHub(op.Hub)
	if h == nil {
		return
	}
	h.deliver(op)
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
	conns         *prometheus.GaugeVec
	sent          *prometheus.CounterVec
	sentBytes     *prometheus.CounterVec
	slowConsumers *prometheus.CounterVec
	sends         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
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
	}
	// A second node on the same registry (the SignalR namespace) shares
	// the collectors; the dialect label tells their conns apart.
	var err error
	if m.conns, err = metricreg.Register(reg, "core", m.conns); err != nil {
		return nil, err
	}
	for _, c := range []**prometheus.CounterVec{&m.sent, &m.sentBytes, &m.slowConsumers, &m.sends} {
		if *c, err = metricreg.Register(reg, "core", *c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
