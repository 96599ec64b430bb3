package cluster

import (
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

const (
	// subjectTraceWatch: a node whose dashboard has live-trace watchers
	// says so every traceWatchPeriod (payload: its node id).
	subjectTraceWatch = "sb.trace.watch"
	// subjectTraceEvents carries the trace events of every node while some
	// node watches; only the watching nodes subscribe.
	subjectTraceEvents = "sb.trace.events"
	traceWatchPeriod   = time.Second
)

// TraceLink carries the dashboard's live trace between nodes. A node with
// watchers subscribes to the events and says it watches, every second;
// every node that heard so within three periods publishes its events (at
// most a rate per second, the rest dropped), and stops when it has not.
// While nobody in the cluster watches, nothing crosses NATS.
type TraceLink struct {
	c          *Cluster
	onWatching func(bool)
	onEvent    func([]byte)
	limit      *rate.Limiter

	mu         sync.Mutex
	watching   bool               // this node has watchers
	events     *nats.Subscription // while watching
	remote     bool               // another node watches
	lastRemote time.Time
}

// TraceLink returns the link of this node's live trace: onWatching(true)
// when another node starts watching, (false) when none does any more;
// onEvent with each event another node publishes while this one watches.
// It publishes at most perSecond events a second. The cluster's Close
// ends it.
func (c *Cluster) TraceLink(perSecond int, onWatching func(bool), onEvent func([]byte)) (*TraceLink, error) {
	l := &TraceLink{c: c, onWatching: onWatching, onEvent: onEvent, limit: rate.NewLimiter(rate.Limit(perSecond), perSecond)}
	sub, err := c.nc.Subscribe(subjectTraceWatch, l.heard)
	if err != nil {
		return nil, fmt.Errorf("cluster: trace: %w", err)
	}
	if !c.spawn(func() { l.run(sub) }) {
		sub.Unsubscribe()
		return nil, fmt.Errorf("cluster: trace: %w", nats.ErrConnectionClosed)
	}
	return l, nil
}

// heard: another node watches.
func (l *TraceLink) heard(m *nats.Msg) {
	if string(m.Data) == l.c.cfg.NodeID {
		return
	}
	l.mu.Lock()
	l.lastRemote = time.Now()
	was := l.remote
	l.remote = true
	l.mu.Unlock()
	if !was {
		l.onWatching(true)
	}
}

// run says this node watches every period while it does, and notices when
// the others stopped saying so; it ends with the cluster.
func (l *TraceLink) run(sub *nats.Subscription) {
	defer sub.Unsubscribe()
	t := time.NewTicker(traceWatchPeriod)
	defer t.Stop()
	for {
		select {
		case <-l.c.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		if l.watching {
			l.c.nc.Publish(subjectTraceWatch, []byte(l.c.cfg.NodeID))
		}
		expired := l.remote && time.Since(l.lastRemote) > 3*traceWatchPeriod
		if expired {
			l.remote = false
		}
		l.mu.Unlock()
		if expired {
			l.onWatching(false)
		}
	}
}

// SetWatching says whether this node has watchers.
func (l *TraceLink) SetWatching(w bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w == l.watching {
		return
	}
	l.watching = w
	if !w {
		if l.events != nil {
			l.events.Unsubscribe()
			l.events = nil
		}
		return
	}
	sub, err := l.c.nc.Subscribe(subjectTraceEvents, func(m *nats.Msg) { l.onEvent(m.Data) })
	if err != nil {
		l.c.log.Warn("live trace: subscribing to the other nodes' events", "err", err)
		return
	}
	l.events = sub
	l.c.nc.Publish(subjectTraceWatch, []byte(l.c.cfg.NodeID)) // at once, not at the next tick
}

// Publish sends an event to the watching nodes; false when over the rate
// (the event is dropped) or NATS refused it.
func (l *TraceLink) Publish(event []byte) bool {
	if !l.limit.Allow() {
		return false
	}
	return l.c.nc.Publish(subjectTraceEvents, event) == nil
}
