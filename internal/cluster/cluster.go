package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Config configures a node's membership of a cluster.
type Config struct {
	// URLs are the NATS servers to connect to (nats://host:4222, tls://…).
	URLs []string
	// NodeID is this node's name in the cluster; it must be unique among
	// live nodes and match ValidNodeID.
	NodeID string

	// Credentials: user and password, or a token, or a creds file (JWT and
	// NKey seed); TLS with a CA, and a client certificate and key.
	User, Password, Token, CredsFile string
	CAFile, CertFile, KeyFile        string

	// HeartbeatInterval is the period of heartbeats; a node is gone after
	// missing three. Default 2s.
	HeartbeatInterval time.Duration
	// ConnectTimeout bounds the first connection and the presence check.
	// Default 5s.
	ConnectTimeout time.Duration
	// MaxOpBytes is the largest operation the node may publish (its
	// largest message plus the envelope); a NATS max_payload below it is
	// warned about at start, as such sends would be refused.
	MaxOpBytes int
	// RequestTimeout bounds a request to another node (an operation on
	// a conn it holds, or a user- or group-wide one on every node); past
	// it the operation fails with core.ErrBrokerUnavailable. Default 2s.
	RequestTimeout time.Duration
	// ReconnectWait is the pause between two reconnect attempts. Default 1s.
	ReconnectWait time.Duration
	// ConfigDigest has a digest of each part of the node's configuration
	// that all nodes must share, by part name; a peer whose digests
	// differ is reported (see configcheck.go). Digests must not reveal
	// secrets: they travel in heartbeats.
	ConfigDigest map[string]string
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// maxNodes bounds the nodes a node keeps track of from heartbeats.
const maxNodes = 1024

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// ValidNodeID reports whether id can name a node in a cluster: 1 to 64
// letters, digits and '-' (it is a NATS subject token and the prefix of
// connection ids).
func ValidNodeID(id string) bool { return nodeIDPattern.MatchString(id) }

// ErrDuplicateNode refuses to start a node whose id a live node has.
var ErrDuplicateNode = errors.New("cluster: a live node already has this node id")

const (
	subjectHeartbeat = "sb.nodes.heartbeat"
	subjectPresence  = "sb.nodes.id." // + node id
)

// Cluster is one node's connection to the cluster.
type Cluster struct {
	cfg      Config
	log      *slog.Logger
	nc       *nats.Conn
	m        *metrics
	instance string // random per start: tells a restarted node from a duplicate
	started  time.Time
	conns    atomic.Pointer[func() int] // SetConnections

	mu      sync.Mutex
	nodes   map[string]*peer // by node id, from heartbeats
	brokers []*Broker
	bs      atomic.Pointer[[]*Broker] // brokers, for who cannot take mu
	relays  []*Relays

	stop     chan struct{}
	done     chan struct{} // closed when the heartbeat goroutine returned
	bgMu     sync.Mutex
	bg       sync.WaitGroup // the relays' goroutines (relay.go, spawn), ended by stop
	bgDone   bool           // Close waits for bg: no more are started
	closed   chan struct{}  // closed by NATS once the connection is closed
	closeErr error
	once     sync.Once
}

// peer is a node seen in heartbeats.
type peer struct {
	heartbeat
	lastSeen      time.Time
	configDiffers []string // parts of its configuration that differ from this node's
}

// heartbeat is what a node publishes on subjectHeartbeat, and what it
// answers a presence request with.
type heartbeat struct {
	NodeID      string    `json:"node_id"`
	Instance    string    `json:"instance"`
	Connections int       `json:"connections"`
	Started     time.Time `json:"started"`
	// Config is the node's Config.ConfigDigest.
	Config map[string]string `json:"config,omitempty"`
	// Interest is, by namespace, the seq of the node's last change of
	// group subscriptions (peers.go).
	Interest map[string]uint64 `json:"interest,omitempty"`
}

// Connect connects to NATS, checks that no live node has cfg.NodeID, and
// starts answering presence requests and sending heartbeats.
func Connect(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if !ValidNodeID(cfg.NodeID) {
		return nil, fmt.Errorf("cluster: node id %q: want 1 to 64 letters, digits or '-'", cfg.NodeID)
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("cluster: no NATS URL")
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.ReconnectWait <= 0 {
		cfg.ReconnectWait = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	var b [8]byte
	rand.Read(b[:])
	c := &Cluster{cfg: cfg, log: cfg.Logger, instance: hex.EncodeToString(b[:]), started: time.Now().UTC(),
		nodes: map[string]*peer{}, stop: make(chan struct{}), done: make(chan struct{}), closed: make(chan struct{})}
	if c.m, err = newMetrics(cfg.Registerer, c); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name("switchboard " + cfg.NodeID),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		// No buffering while reconnecting: a publish then fails, and the
		// REST call that made it answers 503, rather than 202 for a
		// message that may never leave this process.
		nats.ReconnectBufSize(-1),
		// NATS does not send a node's messages back to it: a node
		// delivers its own operations itself (Broker.Publish) and lists
		// itself from its own heartbeats.
		nats.NoEcho(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case <-c.stop:
				return // Close: leaving, not lost
			default:
			}
			c.m.disconnects.Inc()
			c.log.Warn("disconnected from NATS; sends answer 503 until it is back", "err", err)
			for _, b := range c.brokerList() {
				b.connected(false)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.m.reconnects.Inc()
			c.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			for _, b := range c.brokerList() {
				b.connected(true)
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			kind := "async"
			if errors.Is(err, nats.ErrSlowConsumer) {
				kind = "slow_consumer" // NATS dropped operations this node did not take fast enough
			}
			c.m.errors.WithLabelValues(kind).Inc()
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if kind == "slow_consumer" {
				c.relayDropped(subject)
			}
			c.log.Error("NATS error", "kind", kind, "subject", subject, "err", err)
		}),
	}
	switch {
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	url := ""
	for i, u := range cfg.URLs {
		if i > 0 {
			url += ","
		}
		url += u
	}
	if c.nc, err = nats.Connect(url, opts...); err != nil {
		return nil, fmt.Errorf("cluster: connecting to NATS: %w", err)
	}
	defer func() {
		if err != nil {
			c.nc.Close()
		}
	}()
	if err := c.checkPresence(ctx); err != nil {
		return nil, err
	}
	for subj, h := range map[string]nats.MsgHandler{subjectPresence + cfg.NodeID: c.answerPresence, subjectHeartbeat: c.receiveHeartbeat} {
		if _, err := c.nc.Subscribe(subj, h); err != nil {
			return nil, fmt.Errorf("cluster: subscribing to %s: %w", subj, err)
		}
	}
	if err := c.nc.FlushTimeout(cfg.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("cluster: NATS: %w", err)
	}
	if mp := c.nc.MaxPayload(); int64(cfg.MaxOpBytes) > mp {
		c.log.Warn("the NATS max_payload is below the largest send this node accepts: larger sends will be refused with 503; raise max_payload on the NATS servers",
			"max_payload", mp, "needed", cfg.MaxOpBytes)
	}
	c.log.Info("joined the cluster", "node_id", cfg.NodeID, "nats", c.nc.ConnectedUrlRedacted(), "max_payload", c.nc.MaxPayload())
	go c.heartbeats()
	return c, nil
}

// checkPresence fails with ErrDuplicateNode when a live node answers on this
// node's id. Two nodes with one id started within a round trip of each other
// both pass; the heartbeats then tell (errors_total{kind="node_id_conflict"}
// and an error log on both).
func (c *Cluster) checkPresence(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, subjectPresence+c.cfg.NodeID, []byte(c.instance))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil
	case err != nil:
		return fmt.Errorf("cluster: checking that node id %q is free: %w", c.cfg.NodeID, err)
	}
	var hb heartbeat
	json.Unmarshal(msg.Data, &hb) // for the message only
	return fmt.Errorf("%w: node %q (started %s, instance %s) answers on %s; give every node its own server.node_id",
		ErrDuplicateNode, c.cfg.NodeID, hb.Started.Format(time.RFC3339), hb.Instance, msg.Subject)
}

// SetConnections sets what reports the node's open client connections in
// the heartbeats (0 until it is set): a server sets it once what it counts
// exists.
func (c *Cluster) SetConnections(f func() int) { c.conns.Store(&f) }

func (c *Cluster) self() heartbeat {
	n := 0
	if f := c.conns.Load(); f != nil {
		n = (*f)()
	}
	hb := heartbeat{NodeID: c.cfg.NodeID, Instance: c.instance, Connections: n, Started: c.started, Config: c.cfg.ConfigDigest}
	for _, b := range c.brokerList() {
		if hb.Interest == nil {
			hb.Interest = map[string]uint64{}
		}
		hb.Interest[b.ns] = b.interestSeq()
	}
	return hb
}

// brokerList returns the brokers; it does not take mu.
func (c *Cluster) brokerList() []*Broker {
	if bs := c.bs.Load(); bs != nil {
		return *bs
	}
	return nil
}

func (c *Cluster) answerPresence(m *nats.Msg) {
	if string(m.Data) == c.instance {
		return // our own check, if it ever raced with our subscription
	}
	b, _ := json.Marshal(c.self())
	m.Respond(b)
}

func (c *Cluster) receiveHeartbeat(m *nats.Msg) {
	var hb heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || !ValidNodeID(hb.NodeID) {
		c.m.errors.WithLabelValues("heartbeat").Inc()
		return
	}
	c.record(hb)
	if hb.NodeID != c.cfg.NodeID {
		for _, b := range c.brokerList() {
			seq, has := hb.Interest[b.ns]
			b.peerHeartbeat(hb.NodeID, hb.Instance, seq, has)
		}
	}
}

// record notes a node's heartbeat (this node's own included: NATS does not
// echo it).
func (c *Cluster) record(hb heartbeat) {
	if hb.NodeID == c.cfg.NodeID && hb.Instance != c.instance {
		c.m.errors.WithLabelValues("node_id_conflict").Inc()
		c.log.Error("another live node has this node's id: give every node its own server.node_id",
			"node_id", hb.NodeID, "other_instance", hb.Instance, "other_started", hb.Started)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.nodes[hb.NodeID]
	if p == nil {
		if len(c.nodes) >= maxNodes {
			return
		}
		p = &peer{}
		c.nodes[hb.NodeID] = p
		c.log.Info("node joined", "node_id", hb.NodeID)
		if hb.NodeID != c.cfg.NodeID {
			// Tell the newcomer at once rather than at the next
			// period: a user- or group-wide request it makes asks the
			// nodes it knows of.
			b, _ := json.Marshal(c.self())
			if err := c.nc.Publish(subjectHeartbeat, b); err != nil {
				c.m.errors.WithLabelValues("heartbeat_publish").Inc()
			}
		}
	}
	c.checkConfig(p, hb)
	p.heartbeat, p.lastSeen = hb, time.Now()
}

// heartbeats publishes this node's heartbeat every interval, and forgets the
// nodes that missed three, until Close.
func (c *Cluster) heartbeats() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		self := c.self()
		b, _ := json.Marshal(self)
		if err := c.nc.Publish(subjectHeartbeat, b); err != nil {
			c.m.errors.WithLabelValues("heartbeat_publish").Inc()
		} else {
			c.record(self) // live while it can reach NATS
		}
		now := time.Now()
		c.expire(now)
		for _, b := range c.brokerList() {
			b.forgetPeers(now.Add(-3 * c.cfg.HeartbeatInterval))
		}
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

func (c *Cluster) expire(now time.Time) {
	c.mu.Lock()
	var gone []string
	for id, p := range c.nodes {
		if now.Sub(p.lastSeen) > 3*c.cfg.HeartbeatInterval {
			delete(c.nodes, id)
			gone = append(gone, id)
			c.log.Warn("node gone: no heartbeat", "node_id", id, "last_seen", p.lastSeen)
		}
	}
	brokers := slices.Clone(c.brokers)
	c.mu.Unlock()
	for _, id := range gone {
		for _, b := range brokers {
			if d := b.d.Load(); d != nil {
				if w, ok := d.Deliverer.(nodeWatcher); ok {
					w.NodeGone(id)
				}
			}
		}
	}
}

// nodeWatcher is what a broker's deliverer may implement to hear of nodes
// that left (core.Node does: its member notifications drop their users).
type nodeWatcher interface{ NodeGone(id string) }

// relayDropped ends the relay of subject, if it is one (relay.go).
func (c *Cluster) relayDropped(subject string) {
	c.mu.Lock()
	relays := slices.Clone(c.relays)
	c.mu.Unlock()
	for _, r := range relays {
		r.dropped(subject)
	}
}

// NodeID returns this node's id.
func (c *Cluster) NodeID() string { return c.cfg.NodeID }

// Connected reports whether the NATS connection is up.
func (c *Cluster) Connected() bool { return c.nc.IsConnected() }

// NodeState is one node of State.
type NodeState struct {
	NodeID      string    `json:"node_id"`
	Connections int       `json:"connections"`
	Started     time.Time `json:"started"`
	LastSeen    time.Time `json:"last_seen"`
	// ConfigDiffers names the parts of the node's configuration that
	// differ from this node's (access_keys, hubs, …); empty when they
	// match.
	ConfigDiffers []string `json:"config_differs,omitempty"`
}

// State is what GET /admin/cluster shows.
type State struct {
	Enabled   bool           `json:"enabled"` // true: the node is in a cluster
	NodeID    string         `json:"node_id"`
	NATS      NATSState      `json:"nats"`
	JetStream JetStreamState `json:"jetstream"`
	// Nodes are the live nodes (a heartbeat within three periods), this
	// one included once its own heartbeat came back through NATS.
	Nodes []NodeState `json:"nodes"`
}

// NATSState is the state of the node's NATS connection.
type NATSState struct {
	Status     string `json:"status"` // CONNECTED, RECONNECTING, …
	URL        string `json:"url,omitempty"`
	ServerID   string `json:"server_id,omitempty"`
	Reconnects uint64 `json:"reconnects"`
	MaxPayload int64  `json:"max_payload"`
}

// JetStreamState says whether the NATS account has JetStream, which durable
// history needs on a cluster (history.go).
type JetStreamState struct {
	Enabled bool   `json:"enabled"`
	Error   string `json:"error,omitempty"`
}

// State returns the cluster as this node sees it; ctx bounds the JetStream
// query.
func (c *Cluster) State(ctx context.Context) State {
	s := State{Enabled: true, NodeID: c.cfg.NodeID, Nodes: []NodeState{}}
	st := c.nc.Stats()
	s.NATS = NATSState{Status: c.nc.Status().String(), Reconnects: st.Reconnects, MaxPayload: c.nc.MaxPayload()}
	if c.nc.IsConnected() {
		s.NATS.URL, s.NATS.ServerID = c.nc.ConnectedUrlRedacted(), c.nc.ConnectedServerId()
	}
	now := time.Now()
	c.mu.Lock()
	for _, p := range c.nodes {
		if now.Sub(p.lastSeen) <= 3*c.cfg.HeartbeatInterval {
			s.Nodes = append(s.Nodes, NodeState{NodeID: p.NodeID, Connections: p.Connections, Started: p.Started, LastSeen: p.lastSeen.UTC(), ConfigDiffers: p.configDiffers})
		}
	}
	c.mu.Unlock()
	slices.SortFunc(s.Nodes, func(a, b NodeState) int {
		switch {
		case a.NodeID < b.NodeID:
			return -1
		case a.NodeID > b.NodeID:
			return 1
		}
		return 0
	})
	js, err := jetstream.New(c.nc)
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	switch {
	case err == nil:
		s.JetStream.Enabled = true
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
	default:
		s.JetStream.Error = err.Error()
	}
	return s
}

// Close stops the heartbeats, drains the NATS connection (what was
// published is flushed, what was received is handled) and waits until it
// is closed or ctx is done. Later calls return the first one's result.
func (c *Cluster) Close(ctx context.Context) error {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		c.bgMu.Lock()
		c.bgDone = true
		c.bgMu.Unlock()
		c.bg.Wait() // relays sent their closes
		if err := c.nc.Drain(); err != nil {
			c.nc.Close()
		}
		select {
		case <-c.closed:
		case <-ctx.Done():
			c.nc.Close()
			<-c.closed
			c.closeErr = fmt.Errorf("cluster: draining the NATS connection: %w", ctx.Err())
		}
		c.mu.Lock()
		brokers := c.brokers
		c.mu.Unlock()
		for _, b := range brokers {
			b.inbox.close() // what was received is delivered
		}
	})
	return c.closeErr
}

type metrics struct {
	sent, sentBytes, received, receivedBytes *prometheus.CounterVec
	unpublished                              *prometheus.CounterVec
	requestsSent, requestsReceived           *prometheus.CounterVec
	subscriptions                            *prometheus.GaugeVec
	errors                                   *prometheus.CounterVec
	reconnects, disconnects                  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, c *Cluster) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "messages_sent_total",
			Help: "Operations (sends, closes) published to NATS, by namespace."}, []string{"namespace"}),
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "bytes_sent_total",
			Help: "Bytes of the operations published to NATS, by namespace."}, []string{"namespace"}),
		unpublished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "messages_unpublished_total",
			Help: "Operations only this node could take (to its own connections, to a group no other node has members of), delivered without NATS, by namespace."}, []string{"namespace"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "messages_received_total",
			Help: "Operations received from NATS (this node's own included), by namespace."}, []string{"namespace"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "bytes_received_total",
			Help: "Bytes of the operations received from NATS, by namespace."}, []string{"namespace"}),
		requestsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "requests_sent_total",
			Help: "Requests to other nodes (operations on conns they hold, user- and group-wide operations), by namespace."}, []string{"namespace"}),
		requestsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "requests_received_total",
			Help: "Requests from other nodes this node answered, by namespace."}, []string{"namespace"}),
		subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "subscriptions",
			Help: "NATS subscriptions of the node for operations and requests, by namespace: 5 fixed ones (operations to every node, to this node's connections, requests, syncs, interest dumps) and one per group with members on this node."}, []string{"namespace"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "errors_total",
			Help: "Cluster errors by kind: publish (an operation refused with 503), decode (a bad envelope), slow_consumer (NATS dropped operations this node was too slow to take), request (a request to another node failed: timeout, NATS down, bad reply), order_wait (a request waited half the request timeout for its node's earlier operations and ran without them), subscribe (a group's subscription failed, or not every node answered the sync that confirms it within half the request timeout), node_id_conflict, config_mismatch (a node with a different configuration, see config_mismatched_nodes), heartbeat, heartbeat_publish, async, summary (a node summary request for the dashboard failed or could not be answered), summary_too_big (a node summary over 256 KiB, not sent)."}, []string{"kind"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "reconnects_total",
			Help: "Reconnections to NATS."}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "disconnects_total",
			Help: "Losses of the NATS connection."}),
	}
	for _, v := range []**prometheus.CounterVec{&m.sent, &m.sentBytes, &m.unpublished, &m.received, &m.receivedBytes, &m.requestsSent, &m.requestsReceived, &m.errors} {
		var err error
		if *v, err = metricreg.Register(reg, "cluster", *v); err != nil {
			return nil, err
		}
	}
	var err error
	if m.subscriptions, err = metricreg.Register(reg, "cluster", m.subscriptions); err != nil {
		return nil, err
	}
	if m.reconnects, err = metricreg.Register(reg, "cluster", m.reconnects); err != nil {
		return nil, err
	}
	if m.disconnects, err = metricreg.Register(reg, "cluster", m.disconnects); err != nil {
		return nil, err
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "nats_connected",
			Help: "1 while the NATS connection is up, else 0."}, func() float64 {
			if c.nc != nil && c.nc.IsConnected() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "nodes",
			Help: "Live nodes seen in heartbeats, this one included."}, func() float64 {
			c.mu.Lock()
			defer c.mu.Unlock()
			return float64(len(c.nodes))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "config_mismatched_nodes",
			Help: "Live nodes whose configuration (access keys, hubs, history, SignalR settings) differs from this node's; should be 0."}, func() float64 {
			return float64(c.mismatchedNodes())
		}),
	}
	for _, g := range gauges {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	return m, nil
}
