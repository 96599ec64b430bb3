package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
)

// Broker is the core.Broker of one namespace of hubs (the Web PubSub hubs,
// the SignalR hubs): it publishes every operation on the hub's subject and
// delivers every operation of the namespace it receives, its own included,
// to the attached core node.
type Broker struct {
	c       *Cluster
	ns      string
	prefix  string // sb.<ns>.ops.
	sub     *nats.Subscription
	d       atomic.Pointer[deliverer]
	sent    prometheus.Counter
	sentB   prometheus.Counter
	recv    prometheus.Counter
	recvB   prometheus.Counter
	pubErrs prometheus.Counter
	decErrs prometheus.Counter
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
		pubErrs: c.m.errors.WithLabelValues("publish"), decErrs: c.m.errors.WithLabelValues("decode")}
	sub, err := c.nc.Subscribe(b.prefix+">", b.receive)
	if err != nil {
		return nil, fmt.Errorf("cluster: subscribing to %s>: %w", b.prefix, err)
	}
	if err := c.nc.FlushTimeout(c.cfg.ConnectTimeout); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("cluster: NATS: %w", err)
	}
	b.sub = sub
	return b, nil
}

// Attach sets the node that receives operations; core.NewNode calls it.
// Operations received before are dropped: the node had no conns then.
func (b *Broker) Attach(d core.Deliverer) { b.d.Store(&deliverer{d}) }

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// Publish hands op to NATS. It fails with core.ErrBrokerUnavailable, and
// nothing is delivered anywhere, when the NATS connection is down; an
// operation NATS took reaches every node that is connected meanwhile, this
// one included, asynchronously.
func (b *Broker) Publish(ctx context.Context, op *core.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bp := bufPool.Get().(*[]byte)
	buf := encodeOp((*bp)[:0], b.c.cfg.NodeID, op)
	err := b.publish(b.subject(op.Hub), buf)
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

// subject is the subject of hub's operations. Hub names are subject-safe
// but for '.', which hub names never contain as '~'.
func (b *Broker) subject(hub string) string {
	return b.prefix + strings.ReplaceAll(hub, ".", "~")
}

// receive decodes and delivers one operation; NATS calls it for one
// subscription on one goroutine, so operations are delivered in the order
// they arrived.
func (b *Broker) receive(m *nats.Msg) {
	b.recv.Inc()
	b.recvB.Add(float64(len(m.Data)))
	op, _, err := decodeOp(m.Data)
	if err != nil {
		b.decErrs.Inc()
		b.c.log.Error("dropped an operation from NATS", "subject", m.Subject, "bytes", len(m.Data), "err", err)
		return
	}
	if d := b.d.Load(); d != nil {
		d.Deliver(op)
	}
}
