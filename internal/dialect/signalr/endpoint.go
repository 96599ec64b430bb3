package signalr

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/relay"
	"github.com/switchboardhq/switchboard/internal/sessionlimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// Upstream is what the endpoint needs of the upstream webhooks
// (*upstream.SignalRClient implements it).
type Upstream interface {
	Connected(conn upstream.SignalRConn)
	Disconnected(conn upstream.SignalRConn, errMsg string)
	HasUpstream(hub, category, event string) bool
	Invoke(ctx context.Context, conn upstream.SignalRConn, target string, body []byte, msgpack bool) (int, []byte, error)
}

// RateLimits is the per-client rate limiting the endpoint applies
// (*ratelimit.Limiter, whose nil value limits nothing).
type RateLimits interface {
	// Admit checks a request that opens a transport against its client
	// IP's handshake rate and connection count; when it refuses it has
	// answered 429 (Retry-After) and returns false. The slot is released
	// when the transport ends.
	Admit(w http.ResponseWriter, r *http.Request) (*ratelimit.Slot, bool)
	// AdmitConn checks a request that opens a transport against its client
	// IP's connection count only: the first transport of a negotiated
	// session, whose negotiate spent the attempt's handshake token.
	AdmitConn(w http.ResponseWriter, r *http.Request) (*ratelimit.Slot, bool)
	// AdmitRate checks a negotiate against the handshake rate only.
	AdmitRate(w http.ResponseWriter, r *http.Request) bool
	// Budget returns an authenticated session's inbound message budget.
	Budget() *ratelimit.Budget
}

// Transport bits, as in ASP.NET Core's HttpTransportType and the asrs.s.htt claim.
const (
	transportWebSockets = 1
	transportSSE        = 2
	transportLongPoll   = 4
)

// EndpointConfig configures the client endpoint. Zero durations take the
// defaults of ASP.NET Core and the service (spec §6.5).
type EndpointConfig struct {
	Node      *core.Node        // the SignalR namespace, required
	Keys      *auth.KeyRing     // required
	WebSocket *websocket.Server // required; its idle timeout is the client timeout
	Upstream  Upstream          // nil: client invocations are ignored
	// RateLimits applies the per-client-IP and per-connection limits; nil:
	// none.
	RateLimits RateLimits

	StatefulReconnect bool          // grant stateful reconnect to clients that ask
	KeepAlive         time.Duration // server Ping period; default 15s
	HandshakeTimeout  time.Duration // default 15s
	NegotiateTimeout  time.Duration // negotiated but never connected; default 15s
	LongPollTimeout   time.Duration // default 90s
	LongPollGap       time.Duration // default 15s
	MaxMessageBytes   int           // largest client message or POST body; default 1 MiB
	// UserLimits, if set, applies the hubs' max_connections_per_user.
	UserLimits *sessionlimit.Limiter

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // default: a private registry
}

func (c *EndpointConfig) setDefaults() error {
	if c.Node == nil || c.Keys == nil || c.WebSocket == nil {
		return errors.New("signalr: EndpointConfig needs Node, Keys and WebSocket")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.KeepAlive, 15*time.Second)
	def(&c.HandshakeTimeout, 15*time.Second)
	def(&c.NegotiateTimeout, 15*time.Second)
	def(&c.LongPollTimeout, 90*time.Second)
	def(&c.LongPollGap, 15*time.Second)
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RateLimits == nil {
		c.RateLimits = (*ratelimit.Limiter)(nil)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// Endpoint serves /client/negotiate and /client/ (all three transports).
type Endpoint struct {
	cfg     EndpointConfig
	node    *core.Node
	keys    *auth.KeyRing
	ws      *websocket.Server
	up      Upstream
	relays  relay.Dialer // nil: a single node
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context // ends with Close: upstream calls and the sweeper
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	byToken  map[string]*session
	byConnID map[string]*session
	closing  bool // Close waits for wg: relayed polls start no more goroutines
}

// NewEndpoint returns the client endpoint; Close stops it.
func NewEndpoint(cfg EndpointConfig) (*Endpoint, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{
		cfg: cfg, node: cfg.Node, keys: cfg.Keys, ws: cfg.WebSocket, up: cfg.Upstream,
		log: cfg.Logger, metrics: m,
		byToken: make(map[string]*session), byConnID: make(map[string]*session),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.wg.Add(1)
	go e.sweep()
	return e, nil
}

// Close stops the sweeper, cancels upstream calls in flight and closes the
// transports of sessions that have no conn yet (the node's shutdown ends the
// others).
func (e *Endpoint) Close() {
	e.cancel()
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.wg.Wait()
	e.mu.Lock()
	var links []core.Link
	for _, s := range e.byToken {
		s.mu.Lock()
		if s.conn == nil && s.link != nil {
			links = append(links, s.link)
		}
		s.mu.Unlock()
	}
	e.mu.Unlock()
	for _, l := range links {
		l.Close(1001, "server shutting down")
	}
}

// ConnEnded is the node's OnConnEnd hook for SignalR conns: it forgets the
// session and sends the upstream disconnected event.
func (e *Endpoint) ConnEnded(c *core.Conn, reason string) {
	e.mu.Lock()
	s := e.byConnID[c.ID()]
	if s != nil && !s.awaitsFinalPoll() {
		e.forgetLocked(s) // else gone forgets it after the last poll
	}
	e.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	clean := s.cleanEnd
	s.mu.Unlock()
	if e.up != nil {
		msg := ""
		if !clean {
			msg = reason
		}
		e.up.Disconnected(s.upConn(), msg)
	}
	e.log.Debug("signalr client disconnected", "hub", s.hub, "conn_id", s.id, "reason", reason, "clean", clean)
}

// sweep discards negotiated sessions that never opened a transport.
func (e *Endpoint) sweep() {
	defer e.wg.Done()
	period := max(e.cfg.NegotiateTimeout/2, time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case now := <-t.C:
			e.mu.Lock()
			for _, s := range e.byToken {
				if s.unusedSince(now, e.cfg.NegotiateTimeout) {
					e.forgetLocked(s)
				}
			}
			e.mu.Unlock()
		}
	}
}

func (e *Endpoint) register(s *session) {
	e.mu.Lock()
	e.byToken[s.token] = s
	e.byConnID[s.id] = s
	e.mu.Unlock()
	e.metrics.sessions.Inc()
}

func (e *Endpoint) lookup(token string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byToken[token]
}

func (e *Endpoint) forget(s *session) {
	e.mu.Lock()
	e.forgetLocked(s)
	e.mu.Unlock()
}

func (e *Endpoint) forgetLocked(s *session) {
	if s == nil || e.byToken[s.token] != s {
		return
	}
	delete(e.byToken, s.token)
	delete(e.byConnID, s.id)
	e.metrics.sessions.Dec()
}

// ServeHTTP implements http.Handler for /client/negotiate and /client/.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	AllowCORS(w, r)
	path := strings.TrimSuffix(r.URL.Path, "/")
	negotiate := path == "/client/negotiate"
	if !negotiate && path != "/client" {
		e.fail(w, "path", http.StatusNotFound, "not_found", "expected /client/negotiate or /client/")
		return
	}
	if r.Method == http.MethodOptions {
		preflight(w, r)
		e.metrics.requests.WithLabelValues("preflight", "204").Inc()
		return
	}
	if negotiate {
		if !e.admitClientRate(w, r) {
			return
		}
		e.negotiate(w, r)
		return
	}
	e.serveConnection(w, r)
}

// admitClientRate applies the per-client-IP handshake rate to a request
// that opens no transport (negotiate), before anything else of it is read.
func (e *Endpoint) admitClientRate(w http.ResponseWriter, r *http.Request) bool {
	if !e.cfg.RateLimits.AdmitRate(w, r) {
		e.metrics.rejected.WithLabelValues("rate_limited").Inc()
		e.metrics.requests.WithLabelValues("negotiate", "429").Inc()
		return false
	}
	return true
}

// admitClientIP applies the per-client-IP limits (handshake rate,
// concurrent connections) to a request that opens a transport, before its
// token is checked. With negotiated (the first transport of a negotiated
// session: its negotiate spent the attempt's token) only the connection
// count applies.
func (e *Endpoint) admitClientIP(w http.ResponseWriter, r *http.Request, kind string, negotiated bool) (*ratelimit.Slot, bool) {
	admit := e.cfg.RateLimits.Admit
	if negotiated {
		admit = e.cfg.RateLimits.AdmitConn
	}
	slot, ok := admit(w, r)
	if !ok {
		e.metrics.rejected.WithLabelValues("rate_limited").Inc()
		e.metrics.requests.WithLabelValues(kind, "429").Inc()
	}
	return slot, ok
}

// AllowCORS lets browser pages of any origin call the endpoint with
// credentials (the JS client sends them by default), as the service does. The
// server calls it too, ahead of what may answer before the endpoint (the
// admission gate's 503): calling it twice adds nothing.
func AllowCORS(w http.ResponseWriter, r *http.Request) {
	o := r.Header.Get("Origin")
	if o == "" {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Allow-Credentials", "true")
	if !slices.Contains(h.Values("Vary"), "Origin") {
		h.Add("Vary", "Origin")
	}
}

func preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// fail answers a refused request with a plain-text reason, as ASP.NET Core
// does, and counts it.
func (e *Endpoint) fail(w http.ResponseWriter, kind string, status int, reason, msg string) {
	e.metrics.rejected.WithLabelValues(reason).Inc()
	e.metrics.requests.WithLabelValues(kind, strconv.Itoa(status)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// failAuth answers 401 with the ASP.NET-style WWW-Authenticate header.
func (e *Endpoint) failAuth(w http.ResponseWriter, kind string, err error) {
	desc := strings.NewReplacer(`"`, "'", "\n", " ").Replace(err.Error())
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+desc+`"`)
	e.fail(w, kind, http.StatusUnauthorized, "unauthorized", "Unauthorized: "+err.Error())
}

// queryValue reads a query parameter case-insensitively (ASP.NET's query
// collection is), reporting how many values it has.
func queryValue(r *http.Request, name string) (string, int) {
	var v string
	n := 0
	for k, vs := range r.URL.Query() {
		if strings.EqualFold(k, name) {
			n += len(vs)
			if len(vs) > 0 {
				v = vs[0]
			}
		}
	}
	return v, n
}

// clientToken returns the access token of a client request: the
// Authorization header, else the access_token query parameter (browsers
// cannot set headers on WebSockets and EventSource).
func clientToken(r *http.Request) string {
	if t, ok := auth.BearerToken(r.Header.Get("Authorization")); ok {
		return t
	}
	return r.URL.Query().Get("access_token")
}

// authenticate checks the request's token for hub.
func (e *Endpoint) authenticate(r *http.Request, hub string) (*auth.SignalRClaims, error) {
	tok := clientToken(r)
	if tok == "" {
		return nil, auth.ErrTokenMissing
	}
	return e.keys.VerifySignalRClientToken(tok, hub, time.Now())
}

// hubOf returns the key of the hub named by the request's single hub
// parameter. It makes no hub: that waits for an authenticated handshake.
func (e *Endpoint) hubOf(w http.ResponseWriter, r *http.Request, kind string) (string, bool) {
	name, n := queryValue(r, "hub")
	if n != 1 {
		msg := "the hub query parameter is required"
		if n > 1 {
			msg = "only one hub query parameter is allowed"
		}
		e.fail(w, kind, http.StatusBadRequest, "bad_hub", msg)
		return "", false
	}
	hub, err := core.HubKey(name)
	if err != nil {
		e.fail(w, kind, http.StatusBadRequest, "bad_hub", "invalid hub name: it must match ^[A-Za-z][A-Za-z0-9_`,.[\\]]{0,127}$")
		return "", false
	}
	return hub, true
}

type availableTransport struct {
	Transport       string   `json:"transport"`
	TransferFormats []string `json:"transferFormats"`
}

type negotiateResponse struct {
	NegotiateVersion     int                  `json:"negotiateVersion"`
	ConnectionID         string               `json:"connectionId"`
	ConnectionToken      string               `json:"connectionToken,omitempty"`
	AvailableTransports  []availableTransport `json:"availableTransports"`
	UseStatefulReconnect bool                 `json:"useStatefulReconnect,omitempty"`
}

var allTransports = []struct {
	bit int
	t   availableTransport
}{
	{transportWebSockets, availableTransport{"WebSockets", []string{"Text", "Binary"}}},
	{transportSSE, availableTransport{"ServerSentEvents", []string{"Text"}}},
	{transportLongPoll, availableTransport{"LongPolling", []string{"Text", "Binary"}}},
}

// negotiate answers POST /client/negotiate (spec §4.2).
func (e *Endpoint) negotiate(w http.ResponseWriter, r *http.Request) {
	const kind = "negotiate"
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		e.fail(w, kind, http.StatusMethodNotAllowed, "method", "negotiate takes POST")
		return
	}
	hub, ok := e.hubOf(w, r, kind)
	if !ok {
		return
	}
	claims, err := e.authenticate(r, hub)
	if err != nil {
		e.failAuth(w, kind, err)
		return
	}
	version := 0
	if v, n := queryValue(r, "negotiateVersion"); n > 0 {
		version, err = strconv.Atoi(v)
		if err != nil || version < 0 {
			e.fail(w, kind, http.StatusBadRequest, "bad_negotiate_version", "negotiateVersion must be a non-negative integer")
			return
		}
		version = min(version, 1)
	}
	if err := e.admitUser(r.Context(), hub, claims.UserID); err != nil {
		e.fail(w, kind, http.StatusConflict, "user_connection_limit", err.Error())
		return
	}
	wantStateful := false
	if v, n := queryValue(r, "useStatefulReconnect"); n > 0 {
		wantStateful, _ = strconv.ParseBool(v)
	}
	s := e.newSession(hub, claims, r)
	s.stateful = wantStateful && e.cfg.StatefulReconnect
	s.rateSpent.Store(true) // admitClientRate took the attempt's token
	resp := negotiateResponse{NegotiateVersion: version, ConnectionID: s.id, UseStatefulReconnect: s.stateful}
	if version >= 1 {
		resp.ConnectionToken = s.token
	} else {
		s.token = s.id // version 0 clients use the connection id as id
	}
	for _, t := range allTransports {
		if claims.Transports == 0 || claims.Transports&t.bit != 0 {
			resp.AvailableTransports = append(resp.AvailableTransports, t.t)
		}
	}
	e.register(s)
	body, _ := json.Marshal(resp) // plain structs always encode
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.Write(body)
	e.metrics.requests.WithLabelValues(kind, "200").Inc()
}

// newSession makes a session for a client that passed negotiate (or that
// skipped it on WebSockets). Its connection token names this node, as its
// connection id does: in a cluster, a WebSocket with the token that reaches
// another node is relayed here (relay.go).
func (e *Endpoint) newSession(hub string, claims *auth.SignalRClaims, r *http.Request) *session {
	return &session{
		ep: e, hub: hub, claims: claims, id: e.node.NewConnID(), token: e.node.ID() + "_" + randomToken(),
		query: clientQuery(r), created: time.Now(), budget: e.cfg.RateLimits.Budget(),
	}
}

// randomToken returns 16 random bytes, base64url-encoded (22 characters), as
// ASP.NET Core makes connection tokens.
func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// clientQuery is the X-ASRS-Client-Query value: the request's query without
// the secrets (access_token, id) and the transport's cache buster.
func clientQuery(r *http.Request) string {
	q := r.URL.Query()
	for _, k := range []string{"access_token", "id", "_", "negotiateVersion", "useStatefulReconnect"} {
		q.Del(k)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// admitUser applies reject_new of the hub's max_connections_per_user: an
// error when the user already holds the limit on the cluster.
func (e *Endpoint) admitUser(ctx context.Context, hub, user string) error {
	if e.cfg.UserLimits == nil {
		return nil
	}
	view, err := e.node.ViewHub(hub)
	if err != nil {
		return nil // an invalid hub name was refused before
	}
	return e.cfg.UserLimits.Admit(ctx, view, user, "signalr")
}

// duplicateNotice is the invocation an older connection of a user gets
// before max_connections_per_user closes it: target <notice>, one argument
// {"reason": …, "connectionId": <the new connection>}.
func duplicateNotice(p sessionlimit.Policy, reason, newConn string) *core.Message {
	arg, _ := json.Marshal(struct {
		Reason       string `json:"reason"`
		ConnectionID string `json:"connectionId"`
	}{reason, newConn}) // strings always encode
	target, _ := json.Marshal(p.Notice)
	inv := make([]byte, 0, 48+len(target)+len(arg))
	inv = append(append(append(inv, `{"type":1,"target":`...), target...), `,"arguments":[`...)
	inv = append(append(inv, arg...), "]}"...)
	return &core.Message{Type: core.JSON, Data: inv, From: core.FromServer}
}
