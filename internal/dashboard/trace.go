package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Event is one line of the live trace.
type Event struct {
	Time      time.Time `json:"time"`
	Node      string    `json:"node"` // the node it happened on
	Kind      string    `json:"kind"` // connected, disconnected, message, webhook
	Namespace string    `json:"ns"`   // webpubsub or signalr
	Hub       string    `json:"hub"`
	Conn      string    `json:"conn,omitempty"`
	User      string    `json:"user,omitempty"`
	Groups    []string  `json:"groups,omitempty"` // connected: the groups joined on connect
	Protocol  string    `json:"protocol,omitempty"`
	Reason    string    `json:"reason,omitempty"` // disconnected
	// message: whom it went to (all, group, user, conn), the name, its
	// payload type and size.
	Target     string `json:"target,omitempty"`
	TargetName string `json:"target_name,omitempty"`
	Type       string `json:"type,omitempty"`
	Size       int    `json:"size,omitempty"`
	// webhook: the event, the handler's URL (no query), status (0: no
	// answer, see Error) and time in milliseconds.
	Event  string  `json:"event,omitempty"`
	URL    string  `json:"url,omitempty"`
	Status int     `json:"status,omitempty"`
	Millis float64 `json:"ms,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Filter selects trace events; an empty field matches everything.
type Filter struct {
	Hub, Group, User, Conn string
}

func (f *Filter) match(e *Event) bool {
	if f.Hub != "" && f.Hub != e.Hub {
		return false
	}
	if f.Conn != "" && f.Conn != e.Conn && !(e.Target == "conn" && e.TargetName == f.Conn) {
		return false
	}
	if f.User != "" && f.User != e.User && !(e.Target == "user" && e.TargetName == f.User) {
		return false
	}
	if f.Group != "" && !(e.Target == "group" && e.TargetName == f.Group) && !slices.Contains(e.Groups, f.Group) {
		return false
	}
	return true
}

// ErrTooManyWatchers: the trace already has its maximum of watchers.
var ErrTooManyWatchers = errors.New("dashboard: too many live-trace watchers")

// TraceConfig bounds a Tracer. Zero fields take the defaults.
type TraceConfig struct {
	MaxWatchers int // default 8
	Buffer      int // events queued per watcher before new ones are dropped; default 256
	Registerer  prometheus.Registerer
}

// Relay carries trace events between nodes (a cluster's TraceLink).
type Relay interface {
	// Publish sends an event of this node to the nodes that watch; false
	// when it was dropped.
	Publish(event []byte) bool
	// SetWatching says whether this node has watchers.
	SetWatching(bool)
}

// Tracer is the live trace: core's Observer (through Namespace) and the
// event handlers' CallObserver. Every event goes to each watcher whose
// filter it matches, through a bounded channel; a watcher that does not
// keep up loses events, counted. While nobody watches, an event costs one
// atomic load and nothing is built.
type Tracer struct {
	watchers atomic.Int32 // len(subs), read without the lock
	remote   atomic.Bool  // another node watches (RemoteWatching)
	max, buf int
	node     string
	relay    Relay // nil on one node

	mu   sync.Mutex
	subs map[*Watcher]struct{}

	dropped prometheus.Counter
	events  *prometheus.CounterVec
}

// Watcher receives the events of one live-trace view.
type Watcher struct {
	C       <-chan Event
	c       chan Event
	filter  Filter
	dropped atomic.Uint64
	done    chan struct{}
	once    sync.Once
}

// Dropped returns how many events the watcher lost for being slow.
func (w *Watcher) Dropped() uint64 { return w.dropped.Load() }

// Done is closed when the tracer ended the watcher (Close).
func (w *Watcher) Done() <-chan struct{} { return w.done }

// NewTracer returns a tracer nobody watches yet.
func NewTracer(cfg TraceConfig) (*Tracer, error) {
	if cfg.MaxWatchers <= 0 {
		cfg.MaxWatchers = 8
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	t := &Tracer{max: cfg.MaxWatchers, buf: cfg.Buffer, subs: make(map[*Watcher]struct{})}
	var err error
	if t.dropped, err = metricreg.Register(cfg.Registerer, "dashboard", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "dashboard", Name: "trace_dropped_total",
		Help: "Live-trace events a dashboard watcher lost because it did not keep up.",
	})); err != nil {
		return nil, err
	}
	if t.events, err = metricreg.Register(cfg.Registerer, "dashboard", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "dashboard", Name: "trace_events_total",
		Help: "Live-trace events built (only while someone watches), by kind.",
	}, []string{"kind"})); err != nil {
		return nil, err
	}
	return t, nil
}

// Watch adds a watcher of the events f matches; Unwatch removes it.
func (t *Tracer) Watch(f Filter) (*Watcher, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) >= t.max {
		return nil, ErrTooManyWatchers
	}
	c := make(chan Event, t.buf)
	w := &Watcher{C: c, c: c, filter: f, done: make(chan struct{})}
	t.subs[w] = struct{}{}
	t.watchers.Store(int32(len(t.subs)))
	if t.relay != nil && len(t.subs) == 1 {
		t.relay.SetWatching(true)
	}
	return w, nil
}

// SetNode names the node its events happen on; call it before serving.
func (t *Tracer) SetNode(id string) { t.node = id }

// UseRelay makes the trace cluster-wide: the events of this node go to
// the other nodes' watchers, theirs to this node's. Call it before anyone
// watches.
func (t *Tracer) UseRelay(r Relay) {
	t.mu.Lock()
	t.relay = r
	t.mu.Unlock()
}

// RemoteWatching is told whether another node watches (the relay calls it).
func (t *Tracer) RemoteWatching(w bool) { t.remote.Store(w) }

// DeliverRemote hands an event of another node to this node's watchers
// (the relay calls it).
func (t *Tracer) DeliverRemote(b []byte) {
	if t.watchers.Load() == 0 {
		return
	}
	var e Event
	if json.Unmarshal(b, &e) != nil {
		return
	}
	t.fanout(&e)
}

// Unwatch removes w.
func (t *Tracer) Unwatch(w *Watcher) {
	t.mu.Lock()
	if _, ok := t.subs[w]; ok {
		delete(t.subs, w)
		t.watchers.Store(int32(len(t.subs)))
		if t.relay != nil && len(t.subs) == 0 {
			t.relay.SetWatching(false)
		}
	}
	t.mu.Unlock()
	w.once.Do(func() { close(w.done) })
}

// Close ends every watcher (server shutdown).
func (t *Tracer) Close() {
	t.mu.Lock()
	subs := t.subs
	t.subs = make(map[*Watcher]struct{})
	t.watchers.Store(0)
	if t.relay != nil && len(subs) > 0 {
		t.relay.SetWatching(false)
	}
	t.mu.Unlock()
	for w := range subs {
		w.once.Do(func() { close(w.done) })
	}
}

// Watching reports whether anyone watches, here or on another node.
func (t *Tracer) Watching() bool { return t.watchers.Load() > 0 || t.remote.Load() }

// off: nobody watches, here or elsewhere; the observers return at once.
func (t *Tracer) off() bool { return t.watchers.Load() == 0 && !t.remote.Load() }

func (t *Tracer) publish(e Event) {
	e.Time = time.Now().UTC()
	e.Node = t.node
	t.events.WithLabelValues(e.Kind).Inc()
	if t.remote.Load() && t.relay != nil {
		if b, err := json.Marshal(e); err == nil && !t.relay.Publish(b) {
			t.dropped.Inc()
		}
	}
	if t.watchers.Load() > 0 {
		t.fanout(&e)
	}
}

// fanout gives e to this node's watchers whose filter matches it.
func (t *Tracer) fanout(e *Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for w := range t.subs {
		if !w.filter.match(e) {
			continue
		}
		select {
		case w.c <- *e:
		default:
			w.dropped.Add(1)
			t.dropped.Inc()
		}
	}
}

// Namespace returns the core.Observer of the node of namespace ns
// ("webpubsub", "signalr").
func (t *Tracer) Namespace(ns string) core.Observer { return nodeObserver{t: t, ns: ns} }

type nodeObserver struct {
	t  *Tracer
	ns string
}

func (o nodeObserver) ConnOpened(c *core.Conn) {
	if o.t.off() {
		return
	}
	o.t.publish(Event{Kind: "connected", Namespace: o.ns, Hub: c.Hub().Name(), Conn: c.ID(), User: c.UserID(),
		Groups: c.Groups(), Protocol: c.Protocol()})
}

func (o nodeObserver) ConnEnded(c *core.Conn, reason string) {
	if o.t.off() {
		return
	}
	o.t.publish(Event{Kind: "disconnected", Namespace: o.ns, Hub: c.Hub().Name(), Conn: c.ID(), User: c.UserID(),
		Protocol: c.Protocol(), Reason: reason})
}

func (o nodeObserver) Sent(hub string, tg core.Target, m *core.Message, from *core.Conn) {
	if o.t.off() {
		return
	}
	e := Event{Kind: "message", Namespace: o.ns, Hub: hub, Target: tg.Kind.String(), TargetName: tg.Name,
		Type: m.Type.String(), Size: len(m.Data)}
	if from != nil {
		e.Conn, e.User = from.ID(), from.UserID()
	}
	o.t.publish(e)
}

// Called implements upstream.CallObserver.
func (t *Tracer) Called(req *http.Request, kind string, status int, took time.Duration, err error) {
	if t.off() {
		return
	}
	h := req.Header
	e := Event{Kind: "webhook", Namespace: "webpubsub", Event: kind, Status: status,
		Millis: float64(took.Microseconds()) / 1000,
		Hub:    h.Get("ce-hub"), Conn: h.Get("ce-connectionId"), User: h.Get("ce-userId")}
	if name := h.Get("ce-eventName"); name != "" && name != kind {
		e.Event = kind + ":" + name
	}
	if e.Hub == "" {
		e.Namespace = "signalr"
		e.Hub, e.Conn, e.User = h.Get("X-ASRS-Hub"), h.Get("X-ASRS-Connection-Id"), h.Get("X-ASRS-User-Id")
	}
	u := *req.URL
	u.RawQuery, u.Fragment, u.User = "", "", nil
	e.URL = u.String()
	if err != nil {
		e.Error = err.Error()
	}
	t.publish(e)
}
