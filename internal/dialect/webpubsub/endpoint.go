package webpubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/relay"
	"github.com/switchboardhq/switchboard/internal/sessionlimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// EndpointConfig configures the client endpoint.
type EndpointConfig struct {
	Node      *core.Node
	Keys      *auth.KeyRing
	WebSocket *websocket.Server
	// AllowAnonymous reports whether a hub accepts connections without a
	// token; nil means no hub does.
	AllowAnonymous func(hub string) bool
	// Upstream, if set, receives connect, connected and user events.
	Upstream Upstream
	// History, if set, serves fetchHistory requests.
	History History
	// RateLimits, if set, applies the per-client-IP and per-connection
	// limits.
	RateLimits RateLimits
	// UserLimits, if set, applies the hubs' max_connections_per_user.
	UserLimits *sessionlimit.Limiter
	// Invoke bounds the clients' invocations.
	Invoke InvokeConfig
	// Streams bounds the clients' group streams.
	Streams    StreamConfig
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// RateLimits is the per-client rate limiting the endpoint applies
// (*ratelimit.Limiter, whose nil value limits nothing).
type RateLimits interface {
	// Admit checks a connection attempt against its client IP's limits;
	// when it refuses it has answered 429 (Retry-After) and returns false.
	// The slot is released when the connection ends.
	Admit(w http.ResponseWriter, r *http.Request) (*ratelimit.Slot, bool)
	// Budget returns an authenticated connection's inbound message budget.
	Budget() *ratelimit.Budget
}

// Upstream is the event-handler client the endpoint calls (upstream.Client).
type Upstream interface {
	Connect(ctx context.Context, req upstream.ConnectRequest) (*upstream.ConnectResponse, error)
	UserEvent(ctx context.Context, conn upstream.Conn, event, contentType string, data []byte) (*upstream.EventResponse, error)
	Connected(conn upstream.Conn)
	HasUserHandler(hub, event string) bool
}

// History is the catch-up read of group streams (history.Service).
type History interface {
	CatchUp(hub, group string, after uint64, epoch string, limit int) (history.Messages, error)
}

// Endpoint serves GET /client/hubs/{hub} and GET /client/?hub={hub}.
type Endpoint struct {
	node    *core.Node
	keys    *auth.KeyRing
	ws      *websocket.Server
	anon    func(string) bool
	up      Upstream
	history History
	limits  RateLimits
	users   *sessionlimit.Limiter // nil: no hub limits a user's connections
	relays  relay.Dialer
	log     *slog.Logger
	metrics *endpointMetrics
	inv     *invocations
	streams *streams

	ctx    context.Context // ends with Close: the sessions' user events and invocations
	cancel context.CancelFunc
}

type endpointMetrics struct {
	rejected      *prometheus.CounterVec
	messagesIn    *prometheus.CounterVec
	bytesIn       *prometheus.CounterVec
	requestErrors *prometheus.CounterVec
}

// NewEndpoint returns the client endpoint.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.RateLimits == nil {
		cfg.RateLimits = (*ratelimit.Limiter)(nil)
	}
	if cfg.AllowAnonymous == nil {
		cfg.AllowAnonymous = func(string) bool { return false }
	}
	m := &endpointMetrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "handshake_rejections_total",
			Help: "Client handshakes refused, by reason."}, []string{"reason"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "messages_in_total",
			Help: "Client messages received, by hub and dialect."}, []string{"hub", "dialect"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "message_bytes_in_total",
			Help: "Bytes of client messages received, by hub and dialect."}, []string{"hub", "dialect"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "client_request_errors_total",
			Help: "Client requests refused or failed, by dialect and reason."}, []string{"dialect", "reason"}),
	}
	if cfg.Invoke.Timeout < 0 || cfg.Invoke.MaxPerConn < 0 {
		return nil, errors.New("webpubsub: Invoke.Timeout and Invoke.MaxPerConn must not be negative")
	}
	if cfg.Invoke.Timeout == 0 {
		cfg.Invoke.Timeout = DefaultInvokeTimeout
	}
	if cfg.Invoke.MaxPerConn == 0 {
		cfg.Invoke.MaxPerConn = DefaultMaxInvocations
	}
	inv := &invocations{cfg: cfg.Invoke, metrics: newInvokeMetrics()}
	sc := cfg.Streams
	if sc.MaxPerConn < 0 || sc.MaxFragmentBytes < 0 || sc.IdleTimeout < 0 || sc.MaxIdleTimeout < 0 {
		return nil, errors.New("webpubsub: Streams bounds must not be negative")
	}
	if sc.MaxPerConn == 0 {
		sc.MaxPerConn = DefaultMaxStreams
	}
	if sc.MaxFragmentBytes == 0 {
		sc.MaxFragmentBytes = DefaultMaxFragmentBytes
	}
	if sc.IdleTimeout == 0 {
		sc.IdleTimeout = DefaultStreamIdle
	}
	if sc.MaxIdleTimeout == 0 {
		sc.MaxIdleTimeout = DefaultMaxStreamIdle
	}
	str := &streams{cfg: sc, metrics: newStreamMetrics()}
	collectors := append([]prometheus.Collector{m.rejected, m.messagesIn, m.bytesIn, m.requestErrors, inv.metrics.total, inv.metrics.inFlight}, str.metrics.collectors()...)
	for _, c := range collectors {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("webpubsub: register metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Node.TrackHubSeries(m.messagesIn, m.bytesIn) // deleted with their hub
	return &Endpoint{node: cfg.Node, keys: cfg.Keys, ws: cfg.WebSocket, anon: cfg.AllowAnonymous, up: cfg.Upstream, history: cfg.History, limits: cfg.RateLimits, users: cfg.UserLimits, log: cfg.Logger, metrics: m,
		inv: inv, streams: str, ctx: ctx, cancel: cancel}, nil
}

// UseRelays makes the endpoint hand reliable clients whose session lives on
// another node to that node (a cluster); the server calls it before it
// serves, once the relays (which call AcceptRelay) exist.
func (e *Endpoint) UseRelays(d relay.Dialer) { e.relays = d }

// Close cancels the user events and invocations in flight (their clients
// get an error ack or invokeResponse) and waits for the invocations to end;
// the server calls it when it shuts down, after the sessions were told.
func (e *Endpoint) Close() {
	e.cancel()
	e.inv.close()
}

// ConnEnded is the node's OnConnEnd hook for Web PubSub conns: it cancels
// the invocations of a session that ended (a reliable one whose client did
// not come back within the recovery window included) and ends its group
// streams.
func (e *Endpoint) ConnEnded(c *core.Conn) {
	e.inv.connEnded(c)
	e.streams.connEnded(e, c)
}

// hubFromRequest returns the hub a client request names.
func hubFromRequest(r *http.Request) (string, bool) {
	p := r.URL.EscapedPath()
	if rest, ok := strings.CutPrefix(p, "/client/hubs/"); ok {
		rest = strings.TrimSuffix(rest, "/")
		if rest == "" || strings.Contains(rest, "/") {
			return "", false
		}
		hub, err := url.PathUnescape(rest)
		return hub, err == nil
	}
	if p == "/client" || p == "/client/" {
		hub := r.URL.Query().Get("hub")
		return hub, hub != ""
	}
	return "", false
}

// reject answers a handshake with status and reason before any upgrade.
func (e *Endpoint) reject(w http.ResponseWriter, status int, metric, reason string) {
	e.metrics.rejected.WithLabelValues(metric).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, reason)
}

// pickProtocol chooses the subprotocol to echo from the client's offers:
// the first Web PubSub protocol offered (JSON or protobuf), else the first offer (a custom protocol
// of a raw client), else none. ok is false for protocols Switchboard does
// not speak yet.
func pickProtocol(r *http.Request) (proto string, offers []string, ok bool) {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offers = append(offers, p)
			}
		}
	}
	for _, p := range offers {
		switch p {
		case ProtocolJSON, ProtocolJSONReliable, ProtocolProtobuf, ProtocolProtobufReliable:
			return p, offers, true
		}
	}
	if len(offers) == 0 {
		return "", nil, true
	}
	p := offers[0]
	return p, offers, supportedProtocol(p)
}

// supportedProtocol reports whether Switchboard speaks p (any custom
// protocol of a raw client is fine; MQTT and protobuf variants other than
// the two published ones are not).
func supportedProtocol(p string) bool {
	if p == ProtocolProtobuf || p == ProtocolProtobufReliable {
		return true
	}
	return !(strings.HasPrefix(p, "protobuf.") && strings.HasSuffix(p, "webpubsub.azure.v1")) && p != "mqtt"
}

// Dialect names (metric labels) of the protobuf subprotocols.
const (
	dialectProtobuf         = "protobuf"
	dialectProtobufReliable = "protobuf.reliable"
)

func codecFor(proto string) (core.Codec, string) {
	switch proto {
	case ProtocolJSON:
		return jsonCodec{}, "json"
	case ProtocolJSONReliable:
		return jsonCodec{reliable: true}, "json.reliable"
	case ProtocolProtobuf:
		return protobufCodec{}, dialectProtobuf
	case ProtocolProtobufReliable:
		return protobufCodec{reliable: true}, dialectProtobufReliable
	default:
		return rawCodec{}, "raw"
	}
}

// ServeHTTP implements http.Handler.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	slot, ok := e.admitClientIP(w, r)
	if !ok {
		return
	}
	defer slot.Release() // a no-op once a session holds it
	hubName, ok := hubFromRequest(r)
	if !ok {
		e.reject(w, http.StatusNotFound, "bad_path", "expected /client/hubs/{hub} or /client/?hub={hub}")
		return
	}
	// Only the name is checked here: the hub is looked up, or made, once
	// the client is authenticated, so that a refused request leaves nothing.
	hubKey, err := core.HubKey(hubName)
	if err != nil {
		e.reject(w, http.StatusBadRequest, "bad_hub", "invalid hub name: it must match ^[A-Za-z][A-Za-z0-9_`,.[\\]]{0,127}$")
		return
	}
	if !websocket.IsUpgrade(r) {
		e.reject(w, http.StatusBadRequest, "not_websocket", "this endpoint takes WebSocket connections only")
		return
	}
	proto, offers, ok := pickProtocol(r)
	if !ok {
		e.reject(w, http.StatusBadRequest, "bad_subprotocol", fmt.Sprintf("subprotocol %s is not supported", excerpt.Quote(proto)))
		return
	}
	q := r.URL.Query()
	if id := q.Get("awps_connection_id"); id != "" {
		e.resume(w, r, hubKey, proto, id, q.Get("awps_reconnection_token"), slot)
		return
	}
	var claims *auth.ClientClaims
	token := q.Get("access_token")
	if token == "" {
		token, _ = auth.BearerToken(r.Header.Get("Authorization"))
	}
	switch {
	case token != "":
		claims, err = e.keys.VerifyClientToken(token, auth.ClientPath(hubKey), time.Now())
		if err != nil {
			e.reject(w, http.StatusUnauthorized, tokenReason(err), "unauthorized: "+err.Error())
			return
		}
	case e.anon(hubKey):
		claims = &auth.ClientClaims{}
	default:
		e.reject(w, http.StatusUnauthorized, "missing_token", "unauthorized: an access token is required (access_token query parameter or Authorization: Bearer)")
		return
	}
	for _, g := range claims.Groups {
		if !core.ValidGroupName(g) {
			e.reject(w, http.StatusBadRequest, "bad_group", fmt.Sprintf("invalid group name %s in webpubsub.group claim", excerpt.Quote(g)))
			return
		}
	}
	if len(claims.Groups) > e.node.Limits().MaxGroupsPerConn {
		e.reject(w, http.StatusBadRequest, "group_limit", "too many groups in webpubsub.group claim")
		return
	}
	info := core.ConnInfo{
		ID: e.node.NewConnID(), UserID: claims.UserID, Roles: claims.Roles, Groups: claims.Groups,
		Protocol: proto,
	}
	if e.up != nil && !e.connectEvent(w, r, hubKey, claims, offers, &info) {
		return
	}
	if e.users != nil {
		if view, err := e.node.ViewHub(hubKey); err == nil {
			if err := e.users.Admit(r.Context(), view, info.UserID, "webpubsub"); err != nil {
				e.reject(w, http.StatusConflict, "user_connection_limit", err.Error())
				return
			}
		}
	}
	// Authenticated and accepted: make the hub (held until the conn holds
	// it itself).
	hub, release, err := e.node.AcquireHub(hubKey)
	if err != nil {
		e.reject(w, http.StatusServiceUnavailable, "hub_limit", "the server holds too many hubs (limits.max_hubs); try again later")
		return
	}
	defer release()
	proto = info.Protocol
	sock, err := e.ws.Upgrade(w, r, proto)
	if err != nil {
		e.metrics.rejected.WithLabelValues("handshake").Inc()
		return
	}
	codec, dialect := codecFor(proto)
	raw := dialect == "raw"
	info.Codec, info.Dialect = codec, dialect
	if !raw {
		info.Welcome = func(c *core.Conn) core.Frame {
			tok := ""
			if codec.Sequenced() {
				tok = e.keys.ReconnectionToken(c.ID())
			}
			return connectedFrame(c.Protocol(), c.ID(), c.UserID(), tok)
		}
	}
	if e.up != nil {
		// Queued as the conn is made, before its initial groups' joined events and
		// anything that could end it, so that its events keep their order.
		info.OnConnect = func(c *core.Conn) { e.up.Connected(upConn(c)) }
	}
	conn, err := hub.Connect(info, sock)
	if err != nil {
		code := 1011
		if errors.Is(err, core.ErrNodeClosed) {
			code = 1001
		}
		sock.Close(code, excerpt.Error(err))
		sock.Serve(discard{})
		return
	}
	sock.Bind(conn)
	sock.Serve(newSession(e, conn, hub, sock, dialect, slot.Move()))
	if e.users != nil {
		e.users.Evict(r.Context(), conn, "webpubsub", duplicateNotice)
	}
	e.log.Debug("client connected", "hub", hub.Name(), "conn_id", conn.ID(), "user_id", conn.UserID(), "protocol", proto)
}

// resume reattaches a reliable session, or closes with 1008 when it cannot.
// It only looks the hub up: a session to resume holds its hub. A session
// of another node (the conn id names it) is relayed there.
func (e *Endpoint) resume(w http.ResponseWriter, r *http.Request, hubKey, proto, id, token string, slot *ratelimit.Slot) {
	sock, err := e.ws.Upgrade(w, r, proto)
	if err != nil {
		e.metrics.rejected.WithLabelValues("handshake").Inc()
		return
	}
	if e.relays != nil {
		if node, ok := e.relays.Remote(id); ok {
			e.relayResume(sock, node, relay.Request{Kind: relay.KindWebPubSubResume, Hub: hubKey, Protocol: proto, ConnID: id, Token: token}, slot)
			return
		}
	}
	var conn *core.Conn
	var hub *core.Hub
	switch {
	case !e.keys.CheckReconnectionToken(id, token):
		err = errors.New("invalid reconnection token")
	default:
		if hub, err = e.node.LookupHub(hubKey); err == nil {
			if hub == nil {
				err = core.ErrNotRecoverable
			} else {
				conn, err = hub.Resume(id, proto, sock)
			}
		}
	}
	if err != nil {
		e.metrics.rejected.WithLabelValues("not_recoverable").Inc()
		sock.Close(core.ClosePolicy, reasonNotRecoverable)
		sock.Serve(discard{})
		return
	}
	_, dialect := codecFor(proto)
	sock.Bind(conn)
	e.sendRecovered(conn)
	sock.Serve(newSession(e, conn, hub, sock, dialect, slot.Move()))
	if e.users != nil {
		e.users.Evict(r.Context(), conn, "webpubsub", duplicateNotice)
	}
}

// sendRecovered tells a recovered client it is connected again (the
// service may; @azure/web-pubsub-client 1.1.0 resumes its outbound group
// streams only then). It follows the replay of unacknowledged messages.
func (e *Endpoint) sendRecovered(conn *core.Conn) {
	conn.Send(connectedFrame(conn.Protocol(), conn.ID(), conn.UserID(), e.keys.ReconnectionToken(conn.ID())))
}

// connectedFrame is the connected system message in protocol proto.
func connectedFrame(proto, connID, userID, reconnectionToken string) core.Frame {
	if proto == ProtocolProtobuf || proto == ProtocolProtobufReliable {
		return encodeProtobufConnected(connID, userID, reconnectionToken)
	}
	return encodeConnected(connID, userID, reconnectionToken)
}

// Refusal of a session that cannot be resumed, here or on its node.
const reasonNotRecoverable = "connection cannot be recovered"

// reasonRelayUnavailable closes a client whose session's node could not be
// asked: it may try to recover again.
const reasonRelayUnavailable = "the node holding this session could not be reached; reconnect"

// relayResume hands a reliable client to node, which holds its session;
// the client gets node's refusal as node would give it. The reconnection
// token is checked here first (every node has the keys): an unauthenticated
// client costs no NATS request and no relay.
func (e *Endpoint) relayResume(sock *websocket.Socket, node string, req relay.Request, slot *ratelimit.Slot) {
	if !e.keys.CheckReconnectionToken(req.ConnID, req.Token) {
		e.metrics.rejected.WithLabelValues("not_recoverable").Inc()
		sock.Close(core.ClosePolicy, reasonNotRecoverable)
		sock.Serve(discard{})
		return
	}
	rc, err := e.relays.Dial(e.ctx, node, req)
	if err != nil {
		var ref *relay.Refusal
		switch {
		case errors.As(err, &ref):
			e.metrics.rejected.WithLabelValues("relay_refused").Inc()
		case errors.Is(err, relay.ErrOwnerGone):
			e.metrics.rejected.WithLabelValues("not_recoverable").Inc()
			ref = &relay.Refusal{Code: core.ClosePolicy, Reason: reasonNotRecoverable}
		default:
			e.metrics.rejected.WithLabelValues("relay_unavailable").Inc()
			e.log.Warn("relaying a reconnect to the node holding its session failed", "conn_id", req.ConnID, "node", node, "err", err)
			ref = &relay.Refusal{Code: relay.CloseUnavailable, Reason: reasonRelayUnavailable}
		}
		sock.Close(ref.Code, ref.Reason)
		sock.Serve(discard{})
		return
	}
	sock.Serve(relayed{Handler: rc.Attach(sock), slot: slot.Move()})
}

// relayed is the handler of a relayed client's socket: the client IP's
// slot is held here, where the socket is.
type relayed struct {
	relay.Handler
	slot *ratelimit.Slot
}

func (r relayed) HandleClose(reason string) {
	r.slot.Release()
	r.Handler.HandleClose(reason)
}

// AcceptRelay attaches a reliable client whose socket reached another node
// to its session here (relay.Acceptor): the same checks as a reconnect on
// this node's own socket, with the same refusal.
func (e *Endpoint) AcceptRelay(req relay.Request, sock relay.Socket) (relay.Handler, error) {
	if req.Kind != relay.KindWebPubSubResume {
		return nil, &relay.Refusal{Code: 1011, Reason: "unknown relay request " + excerpt.Quote(req.Kind)}
	}
	var conn *core.Conn
	hub, err := e.node.LookupHub(req.Hub)
	switch {
	case !e.keys.CheckReconnectionToken(req.ConnID, req.Token):
		err = errors.New("invalid reconnection token")
	case err != nil:
	case hub == nil:
		err = core.ErrNotRecoverable
	default:
		conn, err = hub.Resume(req.ConnID, req.Protocol, sock)
	}
	if err != nil {
		e.metrics.rejected.WithLabelValues("not_recoverable").Inc()
		return nil, &relay.Refusal{Code: core.ClosePolicy, Reason: reasonNotRecoverable}
	}
	_, dialect := codecFor(req.Protocol)
	sock.Bind(conn)
	e.sendRecovered(conn)
	e.log.Debug("client resumed through a relay", "hub", hub.Name(), "conn_id", conn.ID())
	return newSession(e, conn, hub, sock, dialect, nil), nil
}

// admitClientIP applies the per-client-IP limits (handshake rate,
// concurrent connections) before anything of the request is looked at.
func (e *Endpoint) admitClientIP(w http.ResponseWriter, r *http.Request) (*ratelimit.Slot, bool) {
	slot, ok := e.limits.Admit(w, r)
	if !ok {
		e.metrics.rejected.WithLabelValues("rate_limited").Inc()
	}
	return slot, ok
}

// connectEvent asks the hub's connect handler whether and as whom the client
// may connect, before the upgrade; it applies the answer to info. It answers
// the request itself (and returns false) when the handler rejects the client
// or cannot be reached.
func (e *Endpoint) connectEvent(w http.ResponseWriter, r *http.Request, hub string, claims *auth.ClientClaims, offers []string, info *core.ConnInfo) bool {
	resp, err := e.up.Connect(r.Context(), upstream.ConnectRequest{
		Conn:         upstream.Conn{Hub: hub, ID: info.ID, UserID: info.UserID, Subprotocol: info.Protocol},
		Claims:       connectClaims(claims),
		Query:        r.URL.Query(),
		Headers:      r.Header,
		Subprotocols: offers,
	})
	var rej *upstream.RejectError
	switch {
	case errors.Is(err, upstream.ErrNoHandler):
		return true
	case errors.As(err, &rej):
		e.reject(w, rej.Status, "connect_rejected", rej.Reason)
		return false
	case err != nil:
		// The error names the handler's URL and the network error: they are
		// for the operator's log, not for the client.
		e.log.Warn("connect event failed", "hub", hub, "conn_id", info.ID, "url", upstream.HandlerURL(err), "err", err)
		f := handlerFailure(err)
		e.reject(w, f.status, f.metric, "the connect event handler "+f.what)
		return false
	}
	if resp.UserID != nil {
		info.UserID = *resp.UserID
	}
	if resp.Roles != nil {
		info.Roles = resp.Roles
	}
	for _, g := range resp.Groups {
		if !core.ValidGroupName(g) {
			e.reject(w, http.StatusBadGateway, "upstream_bad_group", fmt.Sprintf("the connect event handler returned an invalid group name %s", excerpt.Quote(g)))
			return false
		}
		if !slices.Contains(info.Groups, g) {
			info.Groups = append(info.Groups, g)
		}
	}
	if resp.Subprotocol != "" {
		if !supportedProtocol(resp.Subprotocol) {
			e.reject(w, http.StatusBadGateway, "upstream_bad_subprotocol", fmt.Sprintf("the connect event handler chose subprotocol %s, which is not supported", excerpt.Quote(resp.Subprotocol)))
			return false
		}
		info.Protocol = resp.Subprotocol
	}
	if resp.State != nil {
		info.State = *resp.State
	}
	return true
}

// connectClaims returns the token's claims for the connect event.
func connectClaims(c *auth.ClientClaims) map[string]any {
	m := make(map[string]any, len(c.Extra)+3)
	for k, v := range c.Extra {
		m[k] = v
	}
	if c.UserID != "" {
		m["sub"] = c.UserID
	}
	if len(c.Roles) > 0 {
		m["role"] = c.Roles
	}
	if len(c.Groups) > 0 {
		m["webpubsub.group"] = c.Groups
	}
	return m
}

// upConn describes c for the event handler.
func upConn(c *core.Conn) upstream.Conn {
	return upstream.Conn{Hub: c.Hub().Name(), ID: c.ID(), UserID: c.UserID(), Subprotocol: c.Protocol(), State: c.State()}
}

func tokenReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return "token_expired"
	case errors.Is(err, auth.ErrTokenAudience):
		return "token_audience"
	case errors.Is(err, auth.ErrTokenSignature):
		return "token_signature"
	case errors.Is(err, auth.ErrTokenAlgorithm):
		return "token_algorithm"
	default:
		return "token_malformed"
	}
}

// discard reads and drops frames of a socket that is closing.
type discard struct{}

func (discard) HandleMessage([]byte, bool) error { return nil }
func (discard) HandleClose(string)               {}

// duplicateNotice is the server message an older connection of a user gets
// before max_connections_per_user closes it: {"event": <notice>, "reason":
// …, "connectionId": <the new connection>}, data type json.
func duplicateNotice(p sessionlimit.Policy, reason, newConn string) *core.Message {
	data, _ := json.Marshal(struct {
		Event        string `json:"event"`
		Reason       string `json:"reason"`
		ConnectionID string `json:"connectionId"`
	}{p.Notice, reason, newConn}) // strings always encode
	return &core.Message{Type: core.JSON, Data: data, From: core.FromServer}
}
