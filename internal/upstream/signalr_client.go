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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// MaxInvocationResponseBytes bounds the body of an upstream's answer to an invocation
// (the emulator's cap); a larger 2xx body is ErrResponseTooLarge.
const MaxInvocationResponseBytes = 16 << 20

// eventReplyBytes bounds what is read of an answer to a connection event: only its status
// counts, and its text is logged when it is rejected.
const eventReplyBytes = 4 << 10

// kindInvocation is the metrics label of invocations (connected and disconnected keep
// theirs).
const kindInvocation = "invocation"

// SignalRConfig configures a SignalRClient. Zero fields take the defaults given.
type SignalRConfig struct {
	// Keys sign every request: X-ASRS-Signature holds one signature per key. Required.
	Keys *auth.KeyRing
	// Upstreams returns the ordered upstream list of a hub: an event goes to the first
	// entry that takes it, and to none when no entry does. It is called for every event,
	// so it must be fast and safe for concurrent use. Nil means no hub has upstreams.
	Upstreams func(hub string) []SignalRUpstream
	// HTTPClient sends the requests. Nil means a client with dial and TLS-handshake
	// timeouts that does not follow redirects; its idle connections are closed by Close.
	HTTPClient *http.Client
	// QueueLimit bounds the connection events (connected, disconnected) queued or being
	// retried; beyond it new ones are dropped and counted. 0 means DefaultQueueLimit
	// (100,000).
	QueueLimit int
	// Workers is the number of goroutines delivering connection events; one slow
	// upstream call holds one of them. 0 means DefaultWorkers (16).
	Workers int
	// Retry is the wait before each retry of a connection event, so an event gets at most
	// len(Retry)+1 attempts. Nil means 1s, 3s, 5s (4 attempts); empty but non-nil means
	// no retries.
	Retry []time.Duration
	// Logger gets one Warn line per undelivered connection event. Nil means discard.
	Logger *slog.Logger
	// Registerer receives the switchboard_upstream_signalr_* metrics. Nil means a private
	// registry.
	Registerer prometheus.Registerer
	// Observer, if set, is told of every upstream call (see CallObserver).
	Observer CallObserver
}

// SignalRConn identifies the client connection in every upstream request.
type SignalRConn struct {
	Hub    string // X-ASRS-Hub and {hub}
	ID     string // the public connection id: X-ASRS-Connection-Id, and what is signed
	UserID string // X-ASRS-User-Id; "" for none (header omitted)
	// Claims are (type, value) pairs in token order, sent as X-ASRS-User-Claims
	// "type: value, type: value"; none means the header is omitted.
	Claims [][2]string
	// Query is the connect request's query with its leading '?' (added when missing), sent
	// as X-ASRS-Client-Query; "" omits the header. The caller leaves access_token and id
	// out; as a safeguard, any left in are dropped here (the token is a secret).
	Query string
}

// SignalRClient sends the upstream webhooks of Azure SignalR Service's serverless mode
// (X-ASRS-* headers) for every hub. It is safe for concurrent use. Its connection events
// go through the dispatcher it shares with the Web PubSub Client: the same queue, order,
// retries and flush on Close.
type SignalRClient struct {
	*dispatcher

	keys      *auth.KeyRing
	upstreams func(hub string) []SignalRUpstream
}

// NewSignalR returns a SignalRClient and starts its workers. Close stops them.
func NewSignalR(cfg SignalRConfig) (*SignalRClient, error) {
	if cfg.Keys == nil {
		return nil, errors.New("upstream: SignalRConfig.Keys is required")
	}
	if err := checkQueueSettings("SignalRConfig", cfg.QueueLimit, cfg.Workers, cfg.Retry); err != nil {
		return nil, err
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = func(string) []SignalRUpstream { return nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer, protoSignalR)
	if err != nil {
		return nil, err
	}
	c := &SignalRClient{keys: cfg.Keys, upstreams: cfg.Upstreams}
	c.dispatcher = newDispatcher(dispatcherConfig{
		httpClient: cfg.HTTPClient,
		queueLimit: cfg.QueueLimit,
		workers:    cfg.Workers,
		retry:      cfg.Retry,
		log:        cfg.Logger.With("component", "upstream", "protocol", "signalr"),
		metrics:    m,
		observer:   cfg.Observer,
	})
	return c, nil
}

// Close stops taking events, waits until the queued connection events are delivered or
// ctx is done, then aborts what is in flight and waits for every goroutine the client
// started. Events still queued are dropped and counted. It returns ctx.Err() if ctx ended
// first. Later calls return the first call's result.
func (c *SignalRClient) Close(ctx context.Context) error {
	return c.shutdown(ctx, nil)
}

// HasUpstream reports whether an upstream of hub takes the event of category: the dialect
// ignores client invocations (category "messages", event = target) without one.
func (c *SignalRClient) HasUpstream(hub, category, event string) bool {
	_, ok := c.upstream(hub, category, event)
	return ok
}

func (c *SignalRClient) upstream(hub, category, event string) (SignalRUpstream, bool) {
	for _, u := range c.upstreams(hub) {
		if u.takes(hub, category, event) {
			return u, true
		}
	}
	return SignalRUpstream{}, false
}

// Connected queues the connected event of conn (category connections, body
// {"type":10}), once its handshake is done. It never blocks; the event is delivered at
// least once, after every earlier event of conn. It does nothing when no upstream takes it.
func (c *SignalRClient) Connected(conn SignalRConn) {
	c.enqueueEvent(kindConnected, EventConnected, conn, []byte(`{"type":10}`))
}

// Disconnected queues the disconnected event of conn (category connections, body
// {"type":11}, with "error":errMsg when errMsg is not empty), to be called once when the
// connection ends. It never blocks; the event is delivered at least once, after every
// earlier event of conn. It does nothing when no upstream takes it.
func (c *SignalRClient) Disconnected(conn SignalRConn, errMsg string) {
	body := []byte(`{"type":11}`)
	if errMsg != "" {
		body, _ = json.Marshal(struct {
			Type  int    `json:"type"`
			Error string `json:"error"`
		}{11, errMsg}) // a string always encodes
	}
	c.enqueueEvent(kindDisconnected, EventDisconnected, conn, body)
}

func (c *SignalRClient) enqueueEvent(kind, event string, conn SignalRConn, body []byte) {
	u, ok := c.upstream(conn.Hub, CategoryConnections, event)
	if !ok {
		return
	}
	id := c.identity(&conn) // the caller may reuse conn.Claims
	c.enqueue(connKey(conn.Hub, conn.ID), &job{
		kind:   kind,
		event:  event,
		hub:    conn.Hub,
		connID: conn.ID,
		attempt: func(ctx context.Context) (*reply, error) {
			return c.post(ctx, &u, &id, kind, CategoryConnections, event, "application/json", body, eventReplyBytes)
		},
	})
}

// Invoke forwards one client invocation to the upstream taking (conn.Hub, "messages",
// target) and waits for its answer, bounded by ctx and the upstream's timeout. body is the
// client's message without transport framing, sent as application/x-msgpack when msgpack
// is set, else application/json. The caller keeps per-connection order by making one call
// at a time per connection.
//
// It returns the HTTP status and body of any answer (a non-2xx body is cut to
// MaxInvocationResponseBytes). Errors: ErrNoHandler when no upstream takes the invocation
// (nothing sent); ErrResponseTooLarge (with the status) for a 2xx body over
// MaxInvocationResponseBytes; ErrUnavailable for a network failure, a timeout (the error
// also wraps the context's error) or a request that cannot be built (an upstream URL or
// header value that cannot be sent); ErrClosed after Close.
func (c *SignalRClient) Invoke(ctx context.Context, conn SignalRConn, target string, body []byte, msgpack bool) (status int, respBody []byte, err error) {
	if c.closing.Load() {
		return 0, nil, ErrClosed
	}
	u, ok := c.upstream(conn.Hub, CategoryMessages, target)
	if !ok {
		return 0, nil, ErrNoHandler
	}
	contentType := "application/json"
	if msgpack {
		contentType = "application/x-msgpack"
	}
	id := c.identity(&conn)
	r, err := c.post(ctx, &u, &id, kindInvocation, CategoryMessages, target, contentType, body, MaxInvocationResponseBytes)
	if errors.Is(err, errUnsendable) {
		return 0, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err != nil {
		return 0, nil, err
	}
	if len(r.body) > MaxInvocationResponseBytes {
		if r.ok() {
			return r.status, nil, fmt.Errorf("upstream: invocation %q: %w: body exceeds %d bytes",
				target, ErrResponseTooLarge, MaxInvocationResponseBytes)
		}
		r.body = r.body[:MaxInvocationResponseBytes]
	}
	return r.status, r.body, nil
}

// asrsIdentity is the X-ASRS-* identity of a connection, rendered once per invocation or
// queued event.
type asrsIdentity struct {
	hub, connID, userID, claims, query, signature string
}

func (c *SignalRClient) identity(conn *SignalRConn) asrsIdentity {
	id := asrsIdentity{
		hub:       conn.Hub,
		connID:    conn.ID,
		userID:    conn.UserID,
		query:     clientQuery(conn.Query),
		signature: c.keys.ASRSSignature(conn.ID),
	}
	if len(conn.Claims) > 0 {
		var b strings.Builder
		for i, cl := range conn.Claims {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(cl[0])
			b.WriteString(": ")
			b.WriteString(cl[1])
		}
		id.claims = b.String()
	}
	return id
}

// clientQuery returns the X-ASRS-Client-Query value of a connect request's query: with a
// leading '?', without access_token and id parameters, "" when nothing is left. The other
// parameters keep their bytes and order.
func clientQuery(q string) string {
	q = strings.TrimPrefix(q, "?")
	if q == "" {
		return ""
	}
	var b strings.Builder
	for param := range strings.SplitSeq(q, "&") {
		key, _, _ := strings.Cut(param, "=")
		if k, err := url.QueryUnescape(key); err == nil && (k == "access_token" || k == "id") {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(param)
	}
	if b.Len() == 0 {
		return ""
	}
	return "?" + b.String()
}

// post sends one event to u, bounded by u's timeout, reading at most limit+1 bytes of
// the answer. Errors wrap ErrUnavailable (network failure, timeout) or errUnsendable,
// and name the event and the URL without its query.
func (c *SignalRClient) post(ctx context.Context, u *SignalRUpstream, id *asrsIdentity, kind, category, event, contentType string, body []byte, limit int64) (*reply, error) {
	target := expandSignalR(u.URLTemplate, id.hub, category, event)
	parsed, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("upstream: signalr %s: %w: upstream URL: %w", kind, errUnsendable, err)
	}
	where := redact(parsed)
	if parsed.Scheme != "http" && parsed.Scheme != "https" || parsed.Host == "" {
		return nil, &HandlerError{Event: "signalr " + kind, URL: where, Err: fmt.Errorf("%w: not an absolute http(s) URL", errUnsendable)}
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout())
	defer cancel()
	req, err := newASRSRequest(ctx, u, target, id, category, event, contentType, body)
	if err != nil {
		return nil, &HandlerError{Event: "signalr " + kind, URL: where, Err: err}
	}
	r, err := c.exchange(kind, req, limit)
	if err != nil {
		return nil, &HandlerError{Event: "signalr " + kind, URL: where, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	return r, nil
}

// newASRSRequest builds the upstream POST. Header names keep the service's spelling
// (X-ASRS-…) on HTTP/1.1.
func newASRSRequest(ctx context.Context, u *SignalRUpstream, target string, id *asrsIdentity, category, event, contentType string, body []byte) (*http.Request, error) {
	for _, v := range []string{id.hub, id.connID, id.userID, id.claims, id.query, event, u.AuthHeader} {
		if !validHeaderValue(v) {
			return nil, fmt.Errorf("%w: invalid header value %q", errUnsendable, v)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnsendable, err)
	}
	hd := req.Header
	hd["X-ASRS-Connection-Id"] = []string{id.connID}
	hd["X-ASRS-Hub"] = []string{id.hub}
	hd["X-ASRS-Category"] = []string{category}
	hd["X-ASRS-Event"] = []string{event}
	if id.userID != "" {
		hd["X-ASRS-User-Id"] = []string{id.userID}
	}
	if id.claims != "" {
		hd["X-ASRS-User-Claims"] = []string{id.claims}
	}
	if id.query != "" {
		hd["X-ASRS-Client-Query"] = []string{id.query}
	}
	hd["X-ASRS-Signature"] = []string{id.signature}
	hd.Set("Content-Type", contentType)
	if u.AuthHeader != "" {
		hd.Set("Authorization", u.AuthHeader)
	}
	return req, nil
}
