package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg"
	"github.com/switchboardhq/switchboard/internal/relay"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
)

// Relays carry the clients whose socket reached this node while their
// session lives on another one (the owner), and the sessions of this node
// whose client's socket is on another node.
//
// The node with the socket (the client end) asks the owner, by NATS
// request/reply on sb.<ns>.node.<owner>.relay, to attach the client
// (relay.Request); the owner checks it as it checks a client on its own
// socket and answers OK, or the close code and reason its own client would
// get. Then whole client messages go to sb.relay.<id>.o, and the owner's
// messages (its conn drained as a socket's writer drains it) to
// sb.relay.<id>.c, each frame numbered per direction: a gap (NATS core
// lost one) closes the relay, and the client recovers again. A close frame
// ends the relay from either side with the code and reason the client gets.
type Relays struct {
	c      *Cluster
	ns     string
	accept relay.Acceptor
	answer relay.Answerer // nil: calls are refused
	cfg    RelayConfig
	log    *slog.Logger
	m      *relayMetrics
	sub    *nats.Subscription

	calls chan struct{} // a token per call being answered (at most Max)

	mu      sync.Mutex
	clients map[string]*clientEnd // by relay id
	owners  map[string]*ownerEnd
}

// RelayConfig bounds a node's relays.
type RelayConfig struct {
	// Max bounds the relays of each side (client ends, owner ends) on
	// this node; past it a relay is refused. Default 10000.
	Max int
	// MaxQueueBytes bounds the owner's messages a client end holds for a
	// socket that does not take them: past it the client is closed as a
	// slow consumer, as the owner closes its own (limits.max_queue_bytes).
	MaxQueueBytes int
	// CallTimeout bounds a call (the owner runs a client's POST, which may
	// wait for an upstream). Default: the cluster's request timeout.
	CallTimeout time.Duration
}

func (r *Relays) attachSubject(node string) string { return "sb." + r.ns + ".node." + node + ".relay" }
func (r *Relays) callSubject(node string) string   { return "sb." + r.ns + ".node." + node + ".call" }

func toOwner(id string) string  { return "sb.relay." + id + ".o" }
func toClient(id string) string { return "sb.relay." + id + ".c" }

type relayMetrics struct {
	open     *prometheus.GaugeVec   // side
	frames   *prometheus.CounterVec // direction
	bytes    *prometheus.CounterVec // direction
	refusals *prometheus.CounterVec // reason
}

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	m := &relayMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "relays",
			Help: "Relays open, by side: client (the socket is here, the session on another node) or owner (the session is here, the socket on another node)."}, []string{"side"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "relay_frames_total",
			Help: "Relay frames (client messages, session messages, closes), by direction: to_owner or to_client."}, []string{"direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "relay_bytes_total",
			Help: "Bytes of relay frames, by direction: to_owner or to_client."}, []string{"direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster", Name: "relay_refusals_total",
			Help: "Relays refused or broken, by reason: refused (by the owner, as it refuses its own clients), owner_gone, unavailable (NATS down, no answer in time), limit (cluster.max_relays), lost (a frame lost on the way), peer_gone (the other node left the heartbeats), slow_consumer, bad_frame."}, []string{"reason"}),
	}
	var err error
	if m.open, err = metricreg.Register(reg, "cluster", m.open); err != nil {
		return nil, err
	}
	for _, v := range []**prometheus.CounterVec{&m.frames, &m.bytes, &m.refusals} {
		if *v, err = metricreg.Register(reg, "cluster", *v); err != nil {
			return nil, err
		}
	}
	for _, side := range []string{"client", "owner"} {
		m.open.WithLabelValues(side) // 0 until a relay opens
	}
	return m, nil
}

// Relays starts serving relays of namespace ns: accept attaches the
// clients other nodes hand to this one, answer (if not nil) runs their
// calls. Its sweeper runs until the cluster closes.
func (c *Cluster) Relays(ns string, accept relay.Acceptor, answer relay.Answerer, cfg RelayConfig) (*Relays, error) {
	if !validNamespace.MatchString(ns) {
		return nil, fmt.Errorf("cluster: namespace %q: want letters, digits or '-'", ns)
	}
	if cfg.Max <= 0 {
		cfg.Max = 10000
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = 4 << 20
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = c.cfg.RequestTimeout
	}
	m, err := newRelayMetrics(c.cfg.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Relays{c: c, ns: ns, accept: accept, answer: answer, cfg: cfg, calls: make(chan struct{}, cfg.Max), log: c.log.With("relay_ns", ns), m: m,
		clients: map[string]*clientEnd{}, owners: map[string]*ownerEnd{}}
	if r.sub, err = c.nc.Subscribe(r.attachSubject(c.cfg.NodeID), r.serveAttach); err != nil {
		return nil, fmt.Errorf("cluster: subscribing to relay attaches: %w", err)
	}
	if answer != nil {
		if _, err := c.nc.Subscribe(r.callSubject(c.cfg.NodeID), r.serveCall); err != nil {
			return nil, fmt.Errorf("cluster: subscribing to relay calls: %w", err)
		}
	}
	if err := c.nc.FlushTimeout(c.cfg.ConnectTimeout); err != nil {
		return nil, fmt.Errorf("cluster: subscribing to relay attaches: %w", err)
	}
	c.mu.Lock()
	c.relays = append(c.relays, r)
	c.mu.Unlock()
	c.spawn(r.sweep)
	return r, nil
}

// spawn runs f on a goroutine Close waits for; once Close waits it starts
// nothing and reports false.
func (c *Cluster) spawn(f func()) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgDone {
		return false
	}
	c.bg.Go(f)
	return true
}

var _ relay.Dialer = (*Relays)(nil)

// Remote implements relay.Dialer: the node named by the conn id's prefix,
// when it is a node id other than this one.
func (r *Relays) Remote(connID string) (string, bool) {
	node := core.ConnNode(connID)
	if node == "" || node == r.c.cfg.NodeID || !ValidNodeID(node) {
		return "", false
	}
	return node, true
}

// Dial implements relay.Dialer.
func (r *Relays) Dial(ctx context.Context, node string, req relay.Request) (relay.Conn, error) {
	nc := r.c.nc
	if !nc.IsConnected() {
		r.m.refusals.WithLabelValues("unavailable").Inc()
		return nil, fmt.Errorf("cluster: relay to %q: NATS connection %s", node, strings.ToLower(nc.Status().String()))
	}
	ce := &clientEnd{r: r, id: newRelayID(), owner: node, started: time.Now()}
	r.mu.Lock()
	if len(r.clients) >= r.cfg.Max {
		r.mu.Unlock()
		r.m.refusals.WithLabelValues("limit").Inc()
		return nil, &relay.Refusal{Code: relay.CloseUnavailable, Reason: reasonLimit}
	}
	r.clients[ce.id] = ce
	r.mu.Unlock()
	r.m.open.WithLabelValues("client").Inc()
	// Subscribed before asking: the owner starts writing once it attached.
	sub, err := nc.Subscribe(toClient(ce.id), ce.receive)
	if err == nil {
		err = r.limitPending(sub)
	}
	if err != nil {
		r.forgetClient(ce)
		r.m.refusals.WithLabelValues("unavailable").Inc()
		return nil, fmt.Errorf("cluster: relay to %q: %w", node, err)
	}
	ce.mu.Lock()
	ce.sub = sub
	ce.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.c.cfg.RequestTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, r.attachSubject(node), appendAttach(nil, &attachReq{req: req, id: ce.id, client: r.c.cfg.NodeID}))
	var refusal *relay.Refusal
	if err == nil {
		refusal, err = decodeAttachReply(msg.Data)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		r.m.refusals.WithLabelValues("owner_gone").Inc()
		err = relay.ErrOwnerGone
	case err != nil:
		r.m.refusals.WithLabelValues("unavailable").Inc()
		err = fmt.Errorf("cluster: relay to %q: %w", node, err)
	case refusal != nil:
		r.m.refusals.WithLabelValues("refused").Inc()
		err = refusal
	}
	if err != nil {
		sub.Unsubscribe()
		r.forgetClient(ce)
		if !errors.Is(err, relay.ErrOwnerGone) && refusal == nil {
			// The owner may have attached and not been able to say so:
			// end its side.
			ce.publish(&relayFrame{typ: frameClose, code: relay.CloseUnavailable, reason: reasonUnavailable})
		}
		return nil, err
	}
	return ce, nil
}

// Call implements relay.Dialer.
func (r *Relays) Call(ctx context.Context, node string, req relay.Request, body []byte) (relay.Answer, error) {
	nc := r.c.nc
	if !nc.IsConnected() {
		r.m.refusals.WithLabelValues("unavailable").Inc()
		return relay.Answer{}, fmt.Errorf("cluster: call to %q: NATS connection %s", node, strings.ToLower(nc.Status().String()))
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	b := appendCall(nil, &req, body)
	r.m.frames.WithLabelValues("to_owner").Inc()
	r.m.bytes.WithLabelValues("to_owner").Add(float64(len(b)))
	msg, err := nc.RequestWithContext(ctx, r.callSubject(node), b)
	var ans *relay.Refusal
	if err == nil {
		ans, err = decodeAttachReply(msg.Data)
		if err == nil && ans == nil {
			err = fmt.Errorf("%w: a call answered as an attach", errRelayEnvelope)
		}
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		r.m.refusals.WithLabelValues("owner_gone").Inc()
		return relay.Answer{}, relay.ErrOwnerGone
	case err != nil:
		r.m.refusals.WithLabelValues("unavailable").Inc()
		return relay.Answer{}, fmt.Errorf("cluster: call to %q: %w", node, err)
	}
	return relay.Answer{Status: ans.Code, Body: ans.Reason}, nil
}

// serveCall answers a call for a session of this node, on a goroutine of
// its own (a POST may wait for an upstream; the next calls must not wait
// for it), at most RelayConfig.Max at a time.
func (r *Relays) serveCall(m *nats.Msg) {
	r.m.frames.WithLabelValues("to_owner").Inc()
	r.m.bytes.WithLabelValues("to_owner").Add(float64(len(m.Data)))
	req, body, err := decodeCall(m.Data)
	if err != nil {
		r.m.refusals.WithLabelValues("bad_frame").Inc()
		r.log.Error("refused a relay call from NATS", "bytes", len(m.Data), "err", err)
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: 500, Reason: "bad relay request"}))
		return
	}
	select {
	case r.calls <- struct{}{}:
	default:
		r.m.refusals.WithLabelValues("limit").Inc()
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: 503, Reason: "too many relayed requests on the node holding this connection; try again later"}))
		return
	}
	if !r.c.spawn(func() {
		defer func() { <-r.calls }()
		ans := r.answer(req, body)
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: ans.Status, Reason: ans.Body}))
	}) {
		<-r.calls
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: 503, Reason: "the node holding this connection is shutting down"}))
	}
}

// limitPending bounds what NATS holds for a relay's subscription: twice
// the relay's own queue bound, so that a client end's slow consumer is seen
// by that bound first. Past it NATS drops frames, and the async error
// handler ends the relay (dropped).
func (r *Relays) limitPending(sub *nats.Subscription) error {
	return sub.SetPendingLimits(-1, 2*r.cfg.MaxQueueBytes)
}

// dropped ends the relay whose subscription NATS dropped frames of (a slow
// consumer): the client recovers again.
func (r *Relays) dropped(subject string) {
	rest, ok := strings.CutPrefix(subject, "sb.relay.")
	if !ok || len(rest) < 3 {
		return
	}
	id, side := rest[:len(rest)-2], rest[len(rest)-2:]
	r.mu.Lock()
	ce, oe := r.clients[id], r.owners[id]
	r.mu.Unlock()
	switch {
	case side == ".c" && ce != nil:
		r.m.refusals.WithLabelValues("lost").Inc()
		ce.fail(relay.CloseUnavailable, reasonLost)
	case side == ".o" && oe != nil:
		r.m.refusals.WithLabelValues("lost").Inc()
		oe.Close(relay.CloseUnavailable, reasonLost)
	}
}

// forgetClient takes ce out of the relays once (the open gauge with it);
// it reports whether this call did.
func (r *Relays) forgetClient(ce *clientEnd) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.clients[ce.id] != ce {
		return false
	}
	delete(r.clients, ce.id)
	r.m.open.WithLabelValues("client").Dec()
	return true
}

// forgetOwner is forgetClient for an owner end.
func (r *Relays) forgetOwner(oe *ownerEnd) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owners[oe.id] != oe {
		return false
	}
	delete(r.owners, oe.id)
	r.m.open.WithLabelValues("owner").Dec()
	return true
}

// serveAttach answers an attach request for a session of this node.
func (r *Relays) serveAttach(m *nats.Msg) {
	a, err := decodeAttach(m.Data)
	if err != nil {
		r.m.refusals.WithLabelValues("bad_frame").Inc()
		r.log.Error("refused a relay attach from NATS", "bytes", len(m.Data), "err", err)
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: 1011, Reason: "bad relay request"}))
		return
	}
	oe := &ownerEnd{r: r, id: a.id, client: a.client, started: time.Now(), wake: make(chan struct{}, 1), done: make(chan struct{})}
	r.mu.Lock()
	if len(r.owners) >= r.cfg.Max {
		r.mu.Unlock()
		r.m.refusals.WithLabelValues("limit").Inc()
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: relay.CloseUnavailable, Reason: reasonLimit}))
		return
	}
	r.owners[oe.id] = oe
	r.mu.Unlock()
	r.m.open.WithLabelValues("owner").Inc()
	sub, err := r.c.nc.Subscribe(toOwner(oe.id), oe.receive)
	if err == nil {
		err = r.limitPending(sub)
	}
	if err != nil {
		r.forgetOwner(oe)
		r.m.refusals.WithLabelValues("unavailable").Inc()
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: relay.CloseUnavailable, Reason: reasonUnavailable}))
		return
	}
	oe.sub = sub
	h, err := r.accept(a.req, oe)
	if err != nil {
		sub.Unsubscribe()
		r.forgetOwner(oe)
		ref := &relay.Refusal{Code: 1011, Reason: "internal error"}
		errors.As(err, &ref)
		r.m.refusals.WithLabelValues("refused").Inc()
		m.Respond(appendAttachReply(nil, ref))
		return
	}
	oe.hmu.Lock()
	oe.h = h
	oe.hmu.Unlock()
	if !r.c.spawn(oe.write) { // the cluster is closing: the relay ends at once
		sub.Unsubscribe()
		r.forgetOwner(oe)
		m.Respond(appendAttachReply(nil, &relay.Refusal{Code: relay.CloseUnavailable, Reason: reasonUnavailable}))
		oe.handleClose("server shutting down")
		return
	}
	if err := m.Respond(appendAttachReply(nil, nil)); err != nil {
		oe.Close(relay.CloseUnavailable, reasonUnavailable)
	}
}

// sweep ends, every heartbeat interval, the relays whose other node left
// the heartbeats (after a grace of three intervals from their start, so
// that a node just joined is not mistaken for a gone one) or while NATS is
// down, until the cluster closes.
func (r *Relays) sweep() {
	t := time.NewTicker(r.c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-r.c.stop:
			return
		case <-t.C:
		}
		r.sweepOnce(time.Now())
	}
}

func (r *Relays) sweepOnce(now time.Time) {
	live := map[string]bool{}
	for _, id := range r.c.liveNodes() {
		live[id] = true
	}
	up := r.c.nc.IsConnected()
	grace := 3 * r.c.cfg.HeartbeatInterval
	var clients []*clientEnd
	var owners []*ownerEnd
	r.mu.Lock()
	for _, ce := range r.clients {
		if !up || (!live[ce.owner] && now.Sub(ce.started) > grace) {
			clients = append(clients, ce)
		}
	}
	for _, oe := range r.owners {
		if !up || (!live[oe.client] && now.Sub(oe.started) > grace) {
			owners = append(owners, oe)
		}
	}
	r.mu.Unlock()
	for _, ce := range clients {
		r.m.refusals.WithLabelValues("peer_gone").Inc()
		ce.fail(relay.CloseUnavailable, reasonOwnerGone)
	}
	for _, oe := range owners {
		r.m.refusals.WithLabelValues("peer_gone").Inc()
		oe.clientGone("the node with the client's socket is gone")
	}
}

// Shutdown closes the client ends' sockets with code and reason (their
// clients reconnect elsewhere); the owners are told the clients dropped.
func (r *Relays) Shutdown(code int, reason string) {
	r.mu.Lock()
	clients := make([]*clientEnd, 0, len(r.clients))
	for _, ce := range r.clients {
		clients = append(clients, ce)
	}
	r.mu.Unlock()
	for _, ce := range clients {
		ce.fail(code, reason)
	}
}

// clientEnd is the relay on the node with the client's socket: a
// core.Source for the socket's writer (the owner's messages) and the
// socket's handler (the client's messages, to the owner).
type clientEnd struct {
	r       *Relays
	id      string
	owner   string
	sub     *nats.Subscription
	started time.Time

	mu     sync.Mutex
	sock   relay.Socket // nil until Attach
	outSeq uint64
	inSeq  uint64
	items  []core.Item
	bytes  int
	closed bool
	// Until Attach: the close the socket is to get, and the keep-alive.
	code      int
	reason    string
	keepAlive *relayFrame
}

var _ relay.Conn = (*clientEnd)(nil)

// Attach implements relay.Conn.
func (ce *clientEnd) Attach(sock relay.Socket) relay.Handler {
	ce.mu.Lock()
	ce.sock = sock
	closed, code, reason, ka := ce.closed, ce.code, ce.reason, ce.keepAlive
	ce.mu.Unlock()
	if ka != nil {
		if k, ok := sock.(relay.KeepAliver); ok {
			k.SetKeepAlive(ka.data, ka.binary)
		}
	}
	sock.Bind(ce)
	if closed {
		sock.Close(code, reason)
	}
	return ce
}

// Abort implements relay.Conn.
func (ce *clientEnd) Abort(reason string) {
	ce.fail(1011, reason)
}

// closeSocket closes the socket with code, or records it for Attach.
func (ce *clientEnd) closeSocket(code int, reason string) {
	ce.mu.Lock()
	sock := ce.sock
	if sock == nil {
		ce.code, ce.reason = code, reason
	}
	ce.mu.Unlock()
	if sock != nil {
		sock.Close(code, reason)
	}
}

var _ core.Source = (*clientEnd)(nil)

// Drain implements core.Source.
func (ce *clientEnd) Drain(_ core.Link, dst []core.Item) []core.Item {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	dst = append(dst, ce.items...)
	clear(ce.items)
	ce.items, ce.bytes = ce.items[:0], 0
	return dst
}

// AppendHead implements core.Source: the owner's frames carry their heads.
func (ce *clientEnd) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }

// receive takes a frame of the owner, on the subscription's goroutine.
func (ce *clientEnd) receive(m *nats.Msg) {
	ce.r.m.frames.WithLabelValues("to_client").Inc()
	ce.r.m.bytes.WithLabelValues("to_client").Add(float64(len(m.Data)))
	f, err := decodeRelayFrame(m.Data)
	if err != nil {
		ce.r.m.refusals.WithLabelValues("bad_frame").Inc()
		ce.r.log.Error("bad relay frame", "relay", ce.id, "err", err)
		ce.fail(1011, "bad relay frame")
		return
	}
	ce.mu.Lock()
	if ce.closed {
		ce.mu.Unlock()
		return
	}
	if f.seq != ce.inSeq+1 {
		ce.mu.Unlock()
		ce.r.m.refusals.WithLabelValues("lost").Inc()
		ce.fail(relay.CloseUnavailable, reasonLost)
		return
	}
	ce.inSeq = f.seq
	sock := ce.sock
	switch f.typ {
	case frameClose:
		ce.closed = true
		ce.mu.Unlock()
		ce.end()
		ce.closeSocket(f.code, f.reason)
		return
	case frameKeepAlive:
		if sock == nil {
			ce.keepAlive = &f
		}
		ce.mu.Unlock()
		if k, ok := sock.(relay.KeepAliver); ok && sock != nil {
			k.SetKeepAlive(f.data, f.binary)
		}
		return
	}
	ce.items = append(ce.items, core.Item{Body: f.data, Binary: f.typ == frameBinary})
	ce.bytes += len(f.data)
	over := ce.bytes > ce.r.cfg.MaxQueueBytes
	ce.mu.Unlock()
	if over {
		ce.r.m.refusals.WithLabelValues("slow_consumer").Inc()
		ce.fail(core.CloseSlowConsumer, reasonSlow)
		return
	}
	if sock != nil {
		sock.Wake()
	}
}

// fail ends the relay from this side: the owner is told the client
// dropped (its session may be recovered), the socket closes with code.
func (ce *clientEnd) fail(code int, reason string) {
	ce.mu.Lock()
	if ce.closed {
		ce.mu.Unlock()
		return
	}
	ce.closed = true
	clear(ce.items)
	ce.items, ce.bytes = nil, 0
	ce.mu.Unlock()
	ce.end()
	ce.publish(&relayFrame{typ: frameClose, code: code, reason: reason})
	ce.closeSocket(code, reason)
}

// end unsubscribes and forgets the relay, once.
func (ce *clientEnd) end() {
	if ce.r.forgetClient(ce) {
		ce.mu.Lock()
		sub := ce.sub
		ce.mu.Unlock()
		if sub != nil {
			sub.Unsubscribe()
		}
	}
}

// publish sends f to the owner.
func (ce *clientEnd) publish(f *relayFrame) error {
	ce.mu.Lock()
	ce.outSeq++
	f.seq = ce.outSeq
	b := appendRelayFrame(nil, f)
	err := ce.r.c.nc.Publish(toOwner(ce.id), b)
	ce.mu.Unlock()
	ce.r.m.frames.WithLabelValues("to_owner").Inc()
	ce.r.m.bytes.WithLabelValues("to_owner").Add(float64(len(b)))
	return err
}

// HandleMessage implements relay.Handler: a client message, to the owner.
func (ce *clientEnd) HandleMessage(data []byte, binary bool) error {
	typ := byte(frameText)
	if binary {
		typ = frameBinary
	}
	if err := ce.publish(&relayFrame{typ: typ, data: data}); err != nil {
		ce.r.m.refusals.WithLabelValues("unavailable").Inc()
		ce.fail(relay.CloseUnavailable, reasonUnavailable)
		return &websocket.CloseError{Code: relay.CloseUnavailable, Reason: reasonUnavailable}
	}
	return nil
}

// HandleClose implements relay.Handler: the socket is gone; the owner is
// told whether the client said goodbye (its session ends) or dropped (it
// may be recovered).
func (ce *clientEnd) HandleClose(reason string) {
	ce.mu.Lock()
	if ce.closed {
		ce.mu.Unlock()
		return
	}
	ce.closed = true
	clear(ce.items)
	ce.items, ce.bytes = nil, 0
	sock := ce.sock
	ce.mu.Unlock()
	ce.end()
	ce.publish(&relayFrame{typ: frameClose, byClient: sock != nil && sock.ClosedByClient(), code: 1000, reason: reason})
}

// ownerEnd is the relay on the node that holds the session: the session's
// socket (a core.Link its conn is drained through, to the client end) and
// the feed of the client's messages to the session's handler.
type ownerEnd struct {
	r       *Relays
	id      string
	client  string
	sub     *nats.Subscription
	h       relay.Handler
	started time.Time

	src      atomic.Pointer[sourceRef]
	wake     chan struct{}
	done     chan struct{} // closed when the writer is done
	byClient atomic.Bool

	inSeq uint64 // the subscription's goroutine only

	mu          sync.Mutex
	closing     bool // the writer sends a close frame after the queue
	code        int
	reason      string
	gone        bool        // the client end is gone: nothing more is sent
	keepAlive   *relayFrame // to send after the queued messages
	handlerDone bool
	hmu         sync.Mutex // one handler call at a time
}

type sourceRef struct{ core.Source }

var _ relay.Socket = (*ownerEnd)(nil)

// Bind implements relay.Socket.
func (oe *ownerEnd) Bind(src core.Source) {
	oe.src.Store(&sourceRef{src})
	oe.Wake()
}

// Wake implements core.Link.
func (oe *ownerEnd) Wake() {
	select {
	case oe.wake <- struct{}{}:
	default:
	}
}

// Close implements core.Link: what is queued is sent, then the close.
func (oe *ownerEnd) Close(code int, reason string) {
	oe.mu.Lock()
	if !oe.closing {
		oe.closing, oe.code, oe.reason = true, code, reason
	}
	oe.mu.Unlock()
	oe.Wake()
}

// ClosedByClient implements relay.Socket.
func (oe *ownerEnd) ClosedByClient() bool { return oe.byClient.Load() }

// SetKeepAlive implements relay.KeepAliver: the client's socket gets it,
// after the messages queued before it.
func (oe *ownerEnd) SetKeepAlive(frame []byte, binary bool) {
	oe.mu.Lock()
	oe.keepAlive = &relayFrame{typ: frameKeepAlive, data: bytes.Clone(frame), binary: binary}
	oe.mu.Unlock()
	oe.Wake()
}

// write drains the session's conn to the client end whenever it is woken,
// until the relay closes; then the handler learns the socket is gone.
func (oe *ownerEnd) write() {
	defer close(oe.done)
	var items []core.Item
	var head, buf []byte
	var seq uint64
	send := func(f *relayFrame) {
		seq++
		f.seq = seq
		buf = appendRelayFrame(buf[:0], f)
		if err := oe.r.c.nc.Publish(toClient(oe.id), buf); err != nil {
			oe.Close(relay.CloseUnavailable, reasonUnavailable)
		}
		oe.r.m.frames.WithLabelValues("to_client").Inc()
		oe.r.m.bytes.WithLabelValues("to_client").Add(float64(len(buf)))
	}
	for {
		select {
		case <-oe.wake:
		case <-oe.r.c.stop:
			oe.Close(core.CloseGoingAway, "server shutting down")
		}
		oe.mu.Lock()
		closing, code, reason, gone, ka := oe.closing, oe.code, oe.reason, oe.gone, oe.keepAlive
		oe.keepAlive = nil
		oe.mu.Unlock()
		if gone {
			break
		}
		if ref := oe.src.Load(); ref != nil {
			items = ref.Drain(oe, items[:0])
			for i := range items {
				it := &items[i]
				head = ref.AppendHead(head[:0], it.Seq, it.Body)
				typ := byte(frameText)
				if it.Binary {
					typ = frameBinary
				}
				send(&relayFrame{typ: typ, data: append(head, it.Body...)})
				it.Body = nil
			}
		}
		if ka != nil {
			send(ka)
		}
		if closing {
			send(&relayFrame{typ: frameClose, code: code, reason: reason})
			break
		}
	}
	if oe.r.forgetOwner(oe) {
		oe.sub.Unsubscribe()
	}
	oe.mu.Lock()
	reason := oe.reason
	oe.mu.Unlock()
	oe.handleClose(reason)
}

// handleClose tells the handler the socket is gone, once.
func (oe *ownerEnd) handleClose(reason string) {
	oe.hmu.Lock()
	defer oe.hmu.Unlock()
	if oe.handlerDone {
		return
	}
	oe.handlerDone = true
	oe.h.HandleClose(reason)
}

// clientGone ends the relay for a client end that is gone: nothing more
// is sent, the handler is told.
func (oe *ownerEnd) clientGone(reason string) {
	oe.mu.Lock()
	oe.gone = true
	if !oe.closing {
		oe.closing, oe.reason = true, reason
	}
	oe.mu.Unlock()
	oe.Wake()
}

// receive takes a frame of the client end, on the subscription's
// goroutine: a client message for the session's handler, or the end of
// the client's socket.
func (oe *ownerEnd) receive(m *nats.Msg) {
	oe.r.m.frames.WithLabelValues("to_owner").Inc()
	oe.r.m.bytes.WithLabelValues("to_owner").Add(float64(len(m.Data)))
	f, err := decodeRelayFrame(m.Data)
	if err != nil {
		oe.r.m.refusals.WithLabelValues("bad_frame").Inc()
		oe.r.log.Error("bad relay frame", "relay", oe.id, "err", err)
		oe.Close(1011, "bad relay frame")
		return
	}
	if f.seq != oe.inSeq+1 {
		oe.r.m.refusals.WithLabelValues("lost").Inc()
		oe.inSeq = ^uint64(0) // every later frame is refused too
		oe.Close(relay.CloseUnavailable, reasonLost)
		return
	}
	oe.inSeq = f.seq
	if f.typ == frameClose {
		oe.byClient.Store(f.byClient)
		oe.clientGone(f.reason)
		return
	}
	oe.hmu.Lock()
	if oe.handlerDone || oe.h == nil {
		oe.hmu.Unlock()
		return
	}
	err = oe.h.HandleMessage(f.data, f.typ == frameBinary)
	oe.hmu.Unlock()
	if err != nil {
		ce := &websocket.CloseError{Code: 1011, Reason: "internal error"}
		errors.As(err, &ce)
		oe.Close(ce.Code, ce.Reason)
	}
}
