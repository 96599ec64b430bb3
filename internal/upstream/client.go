package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// Defaults of Config fields left zero (see also DefaultQueueLimit and DefaultWorkers).
const (
	DefaultMaxResponseBytes = 1 << 20
	DefaultRevalidateAfter  = 5 * time.Minute
)

// Config configures a Client. Zero fields take the defaults given.
type Config struct {
	// Keys sign every request (ce-signature holds one signature per key). Required.
	Keys *auth.KeyRing
	// Origin is the WebHook-Request-Origin value: the bare host name of the public
	// endpoint, without scheme or port (e.g. "pubsub.example.com"). Required.
	Origin string
	// Handlers returns the handlers of a hub, in order: an event goes to the first that
	// takes it. It is called for every event, so it must be fast and safe for concurrent
	// use. Nil means no hub has handlers.
	Handlers func(hub string) []Handler
	// HTTPClient sends the requests. Nil means a client with dial and TLS-handshake
	// timeouts that does not follow redirects; its idle connections are closed by Close.
	HTTPClient *http.Client
	// MaxResponseBytes bounds the body of a 2xx reply; a larger one is ErrBadResponse.
	// 0 means DefaultMaxResponseBytes (1 MiB).
	MaxResponseBytes int64
	// QueueLimit bounds the asynchronous events (connected, disconnected, joined, left) queued or
	// being retried; beyond it new ones are dropped and counted. 0 means
	// DefaultQueueLimit (100,000).
	QueueLimit int
	// Retry is the wait before each retry of an asynchronous event, so an event gets at
	// most len(Retry)+1 attempts. Nil means 1s, 3s, 5s (4 attempts); empty but non-nil
	// means no retries.
	Retry []time.Duration
	// Workers is the number of goroutines delivering asynchronous events; one slow
	// handler call holds one of them. 0 means DefaultWorkers (16).
	Workers int
	// RevalidateAfter is how long a host that refused the abuse-protection validation
	// gets no events before it is asked again. 0 means DefaultRevalidateAfter (5 min).
	RevalidateAfter time.Duration
	// Logger gets one Warn line per refused host and per undelivered asynchronous
	// event. Nil means discard.
	Logger *slog.Logger
	// Registerer receives the switchboard_upstream_* metrics. Nil means a private registry.
	Registerer prometheus.Registerer
	// Observer, if set, is told of every handler call (see CallObserver).
	Observer CallObserver
}

// Conn is the identity of a connection, sent with each of its events.
type Conn struct {
	Hub         string // hub name (ce-hub)
	ID          string // connection id (ce-connectionId)
	UserID      string // ce-userId; "" for anonymous
	Subprotocol string // ce-subprotocol; "" for none
	State       string // ce-connectionState as last set by the handler; "" for none
	// Signature is the ce-signature value; "" means computed from Config.Keys. It depends
	// only on the keys and ID, so a caller may compute it once per connection.
	Signature string
}

// Client sends the events of every hub to their handlers. It is safe for concurrent use.
// Its asynchronous events go through the dispatcher it shares with SignalRClient.
type Client struct {
	*dispatcher

	keys            *auth.KeyRing
	origin          string
	handlers        func(hub string) []Handler
	maxBody         int64
	revalidateAfter time.Duration
	nextID          atomic.Uint64

	// hostsMu guards the fields below.
	hostsMu sync.Mutex
	hosts   map[string]*hostState // by lower-case scheme://host:port
	stopped bool                  // no more validations may start
}

// New returns a Client and starts its workers. Close stops them.
func New(cfg Config) (*Client, error) {
	if cfg.Keys == nil {
		return nil, errors.New("upstream: Config.Keys is required")
	}
	if cfg.Origin == "" {
		return nil, errors.New("upstream: Config.Origin is required")
	}
	if !validHeaderValue(cfg.Origin) {
		return nil, fmt.Errorf("upstream: Config.Origin %q contains a control character", cfg.Origin)
	}
	if cfg.MaxResponseBytes < 0 || cfg.RevalidateAfter < 0 {
		return nil, errors.New("upstream: Config.MaxResponseBytes and RevalidateAfter must not be negative")
	}
	if err := checkQueueSettings("Config", cfg.QueueLimit, cfg.Workers, cfg.Retry); err != nil {
		return nil, err
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.RevalidateAfter == 0 {
		cfg.RevalidateAfter = DefaultRevalidateAfter
	}
	if cfg.Handlers == nil {
		cfg.Handlers = func(string) []Handler { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer, protoWebPubSub)
	if err != nil {
		return nil, err
	}
	c := &Client{
		keys:            cfg.Keys,
		origin:          cfg.Origin,
		handlers:        cfg.Handlers,
		maxBody:         cfg.MaxResponseBytes,
		revalidateAfter: cfg.RevalidateAfter,
		hosts:           make(map[string]*hostState),
	}
	c.dispatcher = newDispatcher(dispatcherConfig{
		httpClient: cfg.HTTPClient,
		queueLimit: cfg.QueueLimit,
		workers:    cfg.Workers,
		retry:      cfg.Retry,
		log:        cfg.Logger.With("component", "upstream"),
		metrics:    m,
		observer:   cfg.Observer,
	})
	return c, nil
}

// Close stops taking events, waits until the queued asynchronous events are delivered or
// ctx is done, then aborts what is in flight and waits for every goroutine the Client
// started. Events still queued are dropped and counted. It returns ctx.Err() if ctx ended
// first. Later calls return the first call's result.
func (c *Client) Close(ctx context.Context) error {
	return c.shutdown(ctx, func() {
		c.hostsMu.Lock()
		c.stopped = true
		c.hostsMu.Unlock()
	})
}

// Connected queues the connected event of conn (after its connected system message). It
// never blocks; the event is delivered at least once, after every earlier event of conn.
// It does nothing when no handler of the hub takes connected.
func (c *Client) Connected(conn Conn) {
	c.enqueueEvent(kindConnected, EventConnected, conn, []byte("{}"))
}

// Disconnected queues the disconnected event of conn, to be called once when a conn whose
// connect succeeded (or had no connect handler) finally ends; reason may be empty. It
// never blocks; the event is delivered at least once, after every earlier event of conn.
func (c *Client) Disconnected(conn Conn, reason string) {
	body, _ := json.Marshal(struct {
		Reason string `json:"reason"`
	}{reason}) // a string always encodes
	c.enqueueEvent(kindDisconnected, EventDisconnected, conn, body)
}

// GroupJoined queues the group presence event joined (ce-type azure.webpubsub.gp.joined,
// body {"group": group}) of conn, for the first handler of the hub whose
// GroupPresenceEvents take it. Like Connected it never blocks and is delivered at least
// once, after every earlier event of conn; it does nothing when no handler takes it.
func (c *Client) GroupJoined(conn Conn, group string) {
	c.enqueueGroupEvent(kindJoined, EventJoined, conn, group)
}

// GroupLeft queues the group presence event left of conn, as GroupJoined.
func (c *Client) GroupLeft(conn Conn, group string) {
	c.enqueueGroupEvent(kindLeft, EventLeft, conn, group)
}

// ObservesGroups reports whether a handler of hub takes a group presence event, so that
// a caller can skip the work of reporting membership changes nobody wants.
func (c *Client) ObservesGroups(hub string) bool {
	for _, h := range c.handlers(hub) {
		if len(h.GroupPresenceEvents) > 0 {
			return true
		}
	}
	return false
}

func (c *Client) enqueueGroupEvent(kind, name string, conn Conn, group string) {
	h, ok := c.groupHandler(conn.Hub, name)
	if !ok {
		return
	}
	body, _ := json.Marshal(struct {
		Group string `json:"group"`
	}{group}) // a string always encodes
	c.enqueueTo(h, kind, name, conn, body)
}

func (c *Client) enqueueEvent(kind, name string, conn Conn, body []byte) {
	h, ok := c.systemHandler(conn.Hub, name)
	if !ok {
		return
	}
	c.enqueueTo(h, kind, name, conn, body)
}

func (c *Client) enqueueTo(h Handler, kind, name string, conn Conn, body []byte) {
	ev := c.newEvent(kind, name, conn, "application/json", body)
	c.enqueue(connKey(conn.Hub, conn.ID), &job{
		kind:    kind,
		event:   name,
		hub:     conn.Hub,
		connID:  conn.ID,
		attempt: func(ctx context.Context) (*reply, error) { return c.send(ctx, &h, ev) },
	})
}

// HasUserHandler reports whether a handler of hub takes user event event.
func (c *Client) HasUserHandler(hub, event string) bool {
	_, ok := c.userHandler(hub, event)
	return ok
}

func (c *Client) systemHandler(hub, event string) (Handler, bool) {
	for _, h := range c.handlers(hub) {
		if h.takesSystem(event) {
			return h, true
		}
	}
	return Handler{}, false
}

func (c *Client) groupHandler(hub, event string) (Handler, bool) {
	for _, h := range c.handlers(hub) {
		if h.takesGroupPresence(event) {
			return h, true
		}
	}
	return Handler{}, false
}

func (c *Client) userHandler(hub, event string) (Handler, bool) {
	for _, h := range c.handlers(hub) {
		if h.takesUser(event) {
			return h, true
		}
	}
	return Handler{}, false
}

// Metrics label values of the event kinds.
const (
	kindConnect      = "connect"
	kindConnected    = "connected"
	kindDisconnected = "disconnected"
	kindUser         = "user"
	kindJoined       = "joined" // group presence
	kindLeft         = "left"
)

// event is one request to a handler, kept unchanged across retries.
type event struct {
	kind        string // metrics label
	name        string // ce-eventName
	conn        Conn
	id          string
	time        string
	contentType string
	body        []byte
}

func (c *Client) newEvent(kind, name string, conn Conn, contentType string, body []byte) *event {
	if conn.Signature == "" {
		conn.Signature = c.keys.Signature(conn.ID)
	}
	return &event{
		kind:        kind,
		name:        name,
		conn:        conn,
		id:          strconv.FormatUint(c.nextID.Add(1), 10),
		time:        time.Now().UTC().Format("2006-01-02T15:04:05Z"),
		contentType: contentType,
		body:        body,
	}
}

func (ev *event) ceType() string {
	switch ev.kind {
	case kindUser:
		return "azure.webpubsub.user." + ev.name
	case kindJoined, kindLeft:
		return "azure.webpubsub.gp." + ev.name
	}
	return "azure.webpubsub.sys." + ev.name
}

// newRequest builds the CloudEvents binary-mode POST of ev to target.
func (c *Client) newRequest(ctx context.Context, h *Handler, target string, ev *event) (*http.Request, error) {
	for _, v := range []string{ev.conn.Hub, ev.conn.ID, ev.conn.UserID, ev.conn.Subprotocol, ev.conn.State, ev.name, ev.contentType} {
		if !validHeaderValue(v) {
			return nil, fmt.Errorf("%w: invalid header value %q", errUnsendable, v)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(ev.body))
	if err != nil {
		return nil, err
	}
	hd := req.Header
	hd.Set("Content-Type", ev.contentType)
	hd.Set("ce-specversion", "1.0")
	hd.Set("ce-awpsversion", "1.0")
	hd.Set("ce-type", ev.ceType())
	hd.Set("ce-source", "/hubs/"+ev.conn.Hub+"/client/"+ev.conn.ID)
	hd.Set("ce-id", ev.id)
	hd.Set("ce-time", ev.time)
	hd.Set("ce-hub", ev.conn.Hub)
	hd.Set("ce-connectionId", ev.conn.ID)
	hd.Set("ce-eventName", ev.name)
	if ev.conn.UserID != "" {
		hd.Set("ce-userId", ev.conn.UserID)
	}
	if ev.conn.Subprotocol != "" {
		hd.Set("ce-subprotocol", ev.conn.Subprotocol)
	}
	if ev.conn.State != "" {
		hd.Set("ce-connectionState", ev.conn.State)
	}
	hd.Set("ce-signature", ev.conn.Signature)
	hd.Set("WebHook-Request-Origin", c.origin)
	if h.AuthHeader != "" {
		hd.Set("Authorization", h.AuthHeader)
	}
	return req, nil
}

// send validates the handler's host if needed, then posts ev to h, bounded by h's
// timeout. Errors wrap ErrUnavailable (with ErrRefused for a refused host),
// ErrBadResponse, ErrClosed or errUnsendable, and name the event and the URL without
// its query.
func (c *Client) send(ctx context.Context, h *Handler, ev *event) (*reply, error) {
	target := expand(h.URLTemplate, ev.conn.Hub, ev.name)
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("upstream: %s: %w: handler URL: %w", ev.kind, errUnsendable, err)
	}
	where := redact(u)
	if err := c.checkHost(ctx, h, ev.conn.Hub, u); err != nil {
		return nil, &HandlerError{Event: ev.kind, URL: where, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout())
	defer cancel()
	req, err := c.newRequest(ctx, h, target, ev)
	if err != nil {
		return nil, &HandlerError{Event: ev.kind, URL: where, Err: err}
	}
	r, err := c.exchange(ev.kind, req, c.maxBody)
	if err != nil {
		return nil, &HandlerError{Event: ev.kind, URL: where, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	if int64(len(r.body)) > c.maxBody {
		if r.ok() {
			return nil, &HandlerError{Event: ev.kind, URL: where, Err: fmt.Errorf("%w: body exceeds %d bytes", ErrBadResponse, c.maxBody)}
		}
		r.body = r.body[:c.maxBody]
	}
	return r, nil
}

// connectionState reads the ce-connectionState header of a 2xx reply: nil when absent.
func connectionState(h http.Header) (*string, error) {
	vs := h.Values("ce-connectionState")
	switch len(vs) {
	case 0:
		return nil, nil
	case 1:
		return &vs[0], nil
	default:
		return nil, fmt.Errorf("%w: %d ce-connectionState headers", ErrBadResponse, len(vs))
	}
}
