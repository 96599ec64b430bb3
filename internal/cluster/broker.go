package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
)

// Broker is the core.Broker of one namespace of hubs (the Web PubSub hubs,
// the SignalR hubs): it publishes every operation on the subject of the
// nodes that may hold a recipient (interest.go) and delivers every
// operation it receives, its own included, to the attached core node.
type Broker struct {
	c      *Cluster
	ns     string
	prefix string // sb.<ns>.ops.
	// sub are the subscriptions to the ops to every node and to this
	// node's conns (they feed inbox) and to syncs; in.groups those to the
	// groups with local members (interest.go; they feed inbox). subs
	// counts them and reqSub.
	sub     []*nats.Subscription
	subs    prometheus.Gauge
	subErrs prometheus.Counter
	in      interest
	inbox   *inbox
	d       atomic.Pointer[deliverer]
	sent    prometheus.Counter
	sentB   prometheus.Counter
	recv    prometheus.Counter
	recvB   prometheus.Counter
	pubErrs prometheus.Counter
	decErrs prometheus.Counter
	// unpublished counts the ops only this node could take (peers.go).
	unpublished prometheus.Counter

	// Requests (request.go): reqSub serves this node's conns.
	reqSub                    *nats.Subscription
	reqSent, reqRecv, reqErrs prometheus.Counter
	// awaiting holds a token per invocation this node runs for another
	// node's REST call, waiting for its client (at most maxAwaiting).
	awaiting chan struct{}

	// Ordering (see order.go): markMu makes NATS get this node's markers
	// in seq order; seq is the last one published; delivered is, by
	// origin node (at most maxNodes), the last marker received.
	markMu    sync.Mutex
	seq       uint64
	ordMu     sync.Mutex
	delivered map[string]*originSeq
	ordWaits  prometheus.Counter
}

type deliverer struct{ core.Deliverer }

var _ core.Broker = (*Broker)(nil)

var validNamespace = nodeIDPattern

// Broker subscribes to the operations of namespace ns (a subject token:
// letters, digits, '-') and returns their broker. It is closed with the
// cluster.
func (c *Cluster) Broker(ns string) (*Broker, error) {
	if !validNamespace.MatchString(ns) {
		return nil, fmt.Errorf("cluster: namespace %q: want letters, digits or '-'", ns)
	}
	b := &Broker{c: c, ns: ns, prefix: "sb." + ns + ".ops.",
		sent: c.m.sent.WithLabelValues(ns), sentB: c.m.sentBytes.WithLabelValues(ns),
		recv: c.m.received.WithLabelValues(ns), recvB: c.m.receivedBytes.WithLabelValues(ns),
		pubErrs: c.m.errors.WithLabelValues("publish"), decErrs: c.m.errors.WithLabelValues("decode"),
		reqSent: c.m.requestsSent.WithLabelValues(ns), reqRecv: c.m.requestsReceived.WithLabelValues(ns),
		reqErrs: c.m.errors.WithLabelValues("request"), ordWaits: c.m.errors.WithLabelValues("order_wait"),
		delivered: map[string]*originSeq{}, awaiting: make(chan struct{}, maxAwaiting),
		subs: c.m.subscriptions.WithLabelValues(ns), subErrs: c.m.errors.WithLabelValues("subscribe"),
		unpublished: c.m.unpublished.WithLabelValues(ns),
		in: interest{groups: map[groupKey]*groupSub{}, deaf: map[string]bool{},
			peers: peers{nodes: map[string]*peerRecord{}, watched: map[groupKey]int{}, since: time.Now()}},
		// A restarted node goes on above its previous markers' seqs.
		seq: uint64(time.Now().UnixNano())}
	b.inbox = newInbox(b.receive, b.dropped)
	fail := func(err error) (*Broker, error) {
		for _, s := range b.sub {
			s.Unsubscribe()
		}
		if b.reqSub != nil {
			b.reqSub.Unsubscribe()
		}
		b.inbox.close()
		return nil, err
	}
	// Ops to every node ('*': the hub, or ~marker) and to this node's conns.
	for _, subj := range []string{b.prefix + "*", b.nodeSubject(c.cfg.NodeID)} {
		sub, err := c.nc.ChanSubscribe(subj, b.inbox.ch)
		if err != nil {
			return fail(fmt.Errorf("cluster: subscribing to %s: %w", subj, err))
		}
		b.sub = append(b.sub, sub)
	}
	reqSub, err := c.nc.Subscribe(b.requestSubject(c.cfg.NodeID), b.serve)
	if err != nil {
		return fail(fmt.Errorf("cluster: subscribing to %s: %w", b.requestSubject(c.cfg.NodeID), err))
	}
	b.reqSub = reqSub
	// Other nodes' syncs (interest.go): answered at once, on their own
	// goroutine.
	syncSub, err := c.nc.Subscribe(b.syncSubject(), b.answerSync)
	if err != nil {
		return fail(fmt.Errorf("cluster: subscribing to %s: %w", b.syncSubject(), err))
	}
	b.sub = append(b.sub, syncSub)
	// Other nodes' dump requests (peers.go).
	dumpSub, err := c.nc.Subscribe(b.interestSubject(c.cfg.NodeID), b.answerDump)
	if err != nil {
		return fail(fmt.Errorf("cluster: subscribing to %s: %w", b.interestSubject(c.cfg.NodeID), err))
	}
	b.sub = append(b.sub, dumpSub)
	if err := c.nc.FlushTimeout(c.cfg.ConnectTimeout); err != nil {
		return fail(fmt.Errorf("cluster: NATS: %w", err))
	}
	b.subs.Set(fixedSubs)
	c.mu.Lock()
	c.brokers = append(c.brokers, b)
	bs := slices.Clone(c.brokers)
	c.bs.Store(&bs)
	c.mu.Unlock()
	return b, nil
}

// Attach sets the node that receives operations; core.NewNode calls it.
// Operations received before are dropped: the node had no conns then.
func (b *Broker) Attach(d core.Deliverer) { b.d.Store(&deliverer{d}) }

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// Publish hands op to NATS for the other nodes that may hold a recipient
// (see interest.go) and delivers it to this node's own recipients before it
// returns, as core's in-process broker does (the connection to NATS has no
// echo: NATS does not send a node's operations back to it, which would cost
// a round trip and a decode per operation, and the local fan-out holds a
// fast publisher back as on a single node). It fails with
// core.ErrBrokerUnavailable, and nothing is delivered anywhere, this node
// included, when the NATS connection is down.
func (b *Broker) Publish(ctx context.Context, op *core.Op) error {
	subject, local, remote, ok := b.route(op)
	if !ok {
		return ctx.Err() // no node can hold a recipient
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !remote {
		// Only this node can hold one (its own conn, a group no other
		// node has members of: peers.go): nothing to publish, but a node
		// cut off from the cluster refuses every send alike.
		b.unpublished.Inc()
		if nc := b.c.nc; !nc.IsConnected() {
			b.pubErrs.Inc()
			return fmt.Errorf("%w: NATS connection %s", core.ErrBrokerUnavailable, strings.ToLower(nc.Status().String()))
		}
	} else {
		bp := bufPool.Get().(*[]byte)
		buf := encodeOp((*bp)[:0], b.c.cfg.NodeID, op)
		err := b.publish(subject, buf)
		if cap(buf) <= 1<<20 { // keep small buffers only
			*bp = buf
			bufPool.Put(bp)
		}
		if err != nil {
			b.pubErrs.Inc()
			return err
		}
		b.sent.Inc()
		b.sentB.Add(float64(len(buf)))
	}
	if local {
		if d := b.d.Load(); d != nil {
			d.Deliver(op)
		}
	}
	return nil
}

func (b *Broker) publish(subject string, data []byte) error {
	nc := b.c.nc
	if !nc.IsConnected() {
		return fmt.Errorf("%w: NATS connection %s", core.ErrBrokerUnavailable, strings.ToLower(nc.Status().String()))
	}
	if err := nc.Publish(subject, data); err != nil { // nats.go copies data
		return fmt.Errorf("%w: %w", core.ErrBrokerUnavailable, err)
	}
	return nil
}

// subject is the subject of hub's operations to every node.
func (b *Broker) subject(hub string) string { return b.prefix + hubToken(hub) }

// hubToken is hub as a subject token. Hub names are subject-safe but for
// '.', which hub names never contain as '~'.
func hubToken(hub string) string { return strings.ReplaceAll(hub, ".", "~") }

// dropped counts an op the inbox had no room for.
func (b *Broker) dropped(first bool) {
	b.c.m.errors.WithLabelValues("slow_consumer").Inc()
	if first {
		b.c.log.Error("dropping operations from NATS: this node delivers them slower than they arrive",
			"namespace", b.ns, "max_queued", inboxMaxMsgs, "max_queued_bytes", inboxMaxBytes)
	}
}

// receive decodes and delivers one operation; the inbox calls it on one
// goroutine, so operations are delivered in the order they arrived.
func (b *Broker) receive(m *nats.Msg) {
	if isMarker(m.Data) { // not an operation (see order.go)
		b.receiveMarker(m)
		return
	}
	b.recv.Inc()
	b.recvB.Add(float64(len(m.Data)))
	op, _, err := decodeOp(m.Data)
	if err != nil {
		b.decErrs.Inc()
		b.c.log.Error("dropped an operation from NATS", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		return
	}
	if op.Message != nil {
		// The delivery latency on this node counts from the arrival: the
		// envelope does not carry the origin's clock, which may differ.
		op.Message.Accepted = time.Now().UnixNano()
	}
	if d := b.d.Load(); d != nil {
		d.Deliver(op)
	}
}
