package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/admin"
	"github.com/switchboardhq/switchboard/internal/api/durable"
	apiwps "github.com/switchboardhq/switchboard/internal/api/webpubsub"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/cluster"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dashboard"
	wps "github.com/switchboardhq/switchboard/internal/dialect/webpubsub"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// Server is one Switchboard node.
type Server struct {
	cfg  config.Config
	log  *slog.Logger
	keys *auth.KeyRing
	node *core.Node
	ws   *websocket.Server
	ep   *wps.Endpoint
	up   *upstream.Client // nil when no hub has event handlers
	hist *history.Service // nil when no hub keeps history, or on a cluster
	// jsHist are the clustered histories (both namespaces) on a cluster
	// whose hubs keep history; nil otherwise.
	jsHist []*cluster.History
	http   *http.Server
	ln     net.Listener
	sr     *signalRService  // nil when signalr.addr is empty
	clus   *cluster.Cluster // nil when cluster.nats_url is empty
	// relays carry reliable clients between this node and the node of
	// their session; nil on a single node.
	relays *cluster.Relays
	lis    *listeners
	conn   *connectors          // the configured connectors (none: an empty list)
	dash   *dashboard.Dashboard // nil when dashboard.enabled is false
	// ready: the histories the readiness probe asks (nil: none); serving:
	// Serve takes traffic (health.go).
	ready   unavailabler
	serving atomic.Bool
	reg     *prometheus.Registry // what /metrics serves
	// undo releases what New started, for a server that is not served (Close).
	undo cleanup
}

// cleanup is a stack of closers of what a constructor started: when a later
// step fails, run releases everything in the reverse order.
type cleanup []func()

func (c *cleanup) push(f func()) { *c = append(*c, f) }

func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// New builds a server from cfg; Serve starts it, Close releases it when it
// will not be served. When New fails it has released what it started.
func New(cfg config.Config, log *slog.Logger) (_ *Server, err error) {
	var undo cleanup
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	keys := cfg.Auth.AccessKeys
	if len(keys) == 0 {
		k, err := auth.LoadOrCreateKey(cfg.Server.DataDir)
		if err != nil {
			return nil, fmt.Errorf("server: access key: %w", err)
		}
		keys = []string{k}
	}
	ring, err := auth.NewKeyRing(keys...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	reg := admin.NewRegistry()
	var wsMain, wsSignalR *websocket.Server // set below, read once serving
	lis, err := newListeners(cfg, log, reg, func() int {
		n := 0
		for _, w := range []*websocket.Server{wsMain, wsSignalR} {
			if w != nil {
				n += w.Sockets()
			}
		}
		return n
	})
	if err != nil {
		return nil, err
	}
	tracer, err := newTracer(cfg, reg) // nil when the dashboard is off
	if err != nil {
		return nil, err
	}
	up, err := newUpstream(cfg, ring, log, reg, tracer)
	if err != nil {
		return nil, err
	}
	if up != nil {
		undo.push(func() { closeUpstream(up, log) })
	}
	rates, err := newRateLimits(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	hist, idem, err := newHistory(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	undo.push(func() { closeHistory(hist) })
	// The history of each namespace, in the forms its users take: nil
	// interfaces without history.
	var coreHist, srCoreHist core.History
	var restHist, srRESTHist durable.History
	var ready unavailabler
	if hist != nil {
		srHist := hist.Namespace(signalRNamespace)
		coreHist, restHist, srCoreHist, srRESTHist, ready = hist, hist, srHist, srHist, hist
	}
	presence := groupEvents(up, ring)
	var ep *wps.Endpoint // made below, before any conn exists
	onEnd := func(c *core.Conn, reason string) {
		if up != nil {
			presence.ended(c)
			up.Disconnected(upConnOf(c), reason)
		}
		ep.ConnEnded(c) // its invocations in flight have no one to answer, its group streams end
	}
	clus, brokers, err := newCluster(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	var jsHist []*cluster.History
	if clus != nil {
		undo.push(func() { closeCluster(clus, log) })
		cfg.Server.NodeID = clus.NodeID() // a generated one: both namespaces carry it
		if policies := historyPolicies(cfg); len(policies) > 0 {
			wpsHist, srHist, err := newClusterHistory(cfg, clus, policies)
			if err != nil {
				return nil, err
			}
			jsHist = []*cluster.History{wpsHist, srHist}
			undo.push(func() { wpsHist.Close(); srHist.Close() }) // before the cluster closes
			coreHist, restHist, srCoreHist, srRESTHist, ready = wpsHist, wpsHist, srHist, srHist, wpsHist
			if cfg.SignalR.Addr != "" { // the SignalR node's streams are set up once it exists
				ready = allAvailable{wpsHist, srHist}
			}
		}
	}
	// Both namespaces' nodes share the metrics registry, so they share the
	// bound of its hub labels too.
	series := core.NewHubSeries(cfg.Limits.MaxHubMetricSeries)
	node, err := core.NewNode(core.Config{
		NodeID:         cfg.Server.NodeID,
		Broker:         brokers.wps,
		Limits:         nodeLimits(cfg),
		RecoveryWindow: cfg.Reliable.RecoveryWindow,
		Logger:         log.With("component", "core"),
		Registerer:     reg,
		OnConnEnd:      onEnd,
		Membership:     presence.membership(),
		History:        coreHist,
		MaxHubs:        cfg.Limits.MaxHubs,
		HubIdleTimeout: cfg.Limits.HubIdleTimeout,
		HubSeries:      series,
		PresenceNotify: presenceNotify(cfg, "webpubsub"),
		Observer:       nodeObserver(tracer, "webpubsub"),
	})
	if err != nil {
		return nil, err
	}
	if err := traceAcrossNodes(tracer, node.ID(), clus); err != nil {
		return nil, err
	}

	wsrv, err := newWebSocket(cfg, cfg.WebSocket.PingInterval, cfg.WebSocket.IdleTimeout, log, reg)
	if err != nil {
		return nil, err
	}
	wsMain = wsrv
	undo.push(wsrv.Close)
	users, err := userLimits(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	epCfg := wps.EndpointConfig{
		Node: node, Keys: ring, WebSocket: wsrv,
		AllowAnonymous: func(hub string) bool { return cfg.Hub(hub).AnonymousConnect },
		RateLimits:     rates,
		UserLimits:     users,
		Invoke:         wps.InvokeConfig{Timeout: cfg.Invoke.Timeout, MaxPerConn: cfg.Invoke.MaxPerConn},
		Streams: wps.StreamConfig{MaxPerConn: cfg.Streams.MaxPerConn, MaxFragmentBytes: cfg.Streams.MaxFragmentBytes,
			IdleTimeout: cfg.Streams.IdleTimeout, MaxIdleTimeout: cfg.Streams.MaxIdleTimeout},
		Logger:     log.With("component", "webpubsub"),
		Registerer: reg,
	}
	if up != nil {
		epCfg.Upstream = up
	}
	if restHist != nil {
		epCfg.History = restHist
	}
	ep, err = wps.NewEndpoint(epCfg)
	if err != nil {
		return nil, err
	}
	undo.push(ep.Close)
	var relays *cluster.Relays
	if clus != nil {
		if relays, err = clus.Relays(clusterNamespaceWPS, ep.AcceptRelay, nil, relayConfig(cfg)); err != nil {
			return nil, err
		}
		ep.UseRelays(relays)
	}
	restCfg := apiwps.Config{
		Node: node, Keys: ring, MaxBodyBytes: int64(cfg.Limits.MaxBodyBytes), PublicEndpoint: cfg.Server.PublicEndpoint,
		Idempotency: idem,
		Logger:      log.With("component", "api"), Registerer: reg,
	}
	restCfg.History = restHist
	rest, err := apiwps.NewHandler(restCfg)
	if err != nil {
		return nil, err
	}
	var s *Server
	mux := http.NewServeMux()
	mux.Handle("/client/", ep)
	mux.Handle("/client", ep)
	mux.Handle("/api/", rest)
	probes(mux, &s)
	admin.Register(mux, admin.Config{
		Registry:   reg,
		Settings:   cfg.Redacted(),
		Pprof:      cfg.Admin.Pprof,
		History:    historySummary(hist, jsHist),
		Cluster:    clusterSummary(clus),
		Connectors: func() any { return s.conn.summary() }, // s is set below, before serving
		Presence:   presenceSummary(&s),
		Authorized: func(r *http.Request) bool {
			tok, ok := auth.BearerToken(r.Header.Get("Authorization"))
			return ok && ring.VerifyServerToken(tok, r.URL.Path, time.Now()) == nil
		},
	})
	s = &Server{reg: reg, ready: ready, cfg: cfg, log: log, keys: ring, node: node, ws: wsrv, up: up, hist: hist, jsHist: jsHist, lis: lis, ep: ep, clus: clus, relays: relays}
	if cfg.SignalR.Addr != "" {
		srIdem := idem.Namespace(signalRNamespace)
		if s.sr, err = newSignalR(cfg, ring, log.With("listener", "signalr"), reg, series, srCoreHist, srRESTHist, srIdem, rates, users, lis, brokers.signalr, clus, tracer); err != nil {
			return nil, err
		}
		undo.push(s.sr.closeNow)
		wsSignalR = s.sr.ws
	}
	var wpsReplays, srReplays durable.ReplayCounter // nil interfaces without history
	if hist != nil {
		wpsReplays, srReplays = hist, hist.Namespace(signalRNamespace)
	}
	var srNS *namespace
	if s.sr != nil {
		ns := newNamespace(s.sr.node, idem.Namespace(signalRNamespace), srReplays)
		srNS = &ns
	}
	if s.conn, err = newConnectors(cfg, newNamespace(node, idem, wpsReplays), srNS, log, reg); err != nil {
		return nil, err
	}
	if s.dash, err = newDashboard(cfg, s, tracer, rates, historySummary(hist, jsHist), clusterSummary(clus)); err != nil {
		return nil, err
	}
	if s.dash != nil {
		s.dash.Register(mux)
		if clus != nil {
			if err := clus.ServeSummaries(s.dash.Summary); err != nil {
				return nil, err
			}
		}
	}
	s.http = httpServer(lis.gate.Handler(mux, webPubSubKind), cfg.Server.ReadTimeout, log)
	if clus != nil {
		clus.SetConnections(lis.gate.Open) // its count reads wsMain and wsSignalR, set by now
	}
	s.undo, undo = undo, nil
	return s, nil
}

// newRateLimits returns the per-client rate limits both listeners share
// (one table of client IPs, so an IP's connections on both count together).
func newRateLimits(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*ratelimit.Limiter, error) {
	r := cfg.Limits.ClientRates
	proxies, err := r.TrustedProxyPrefixes()
	if err != nil {
		return nil, fmt.Errorf("server: limits.trusted_proxies: %w", err)
	}
	l, err := ratelimit.New(ratelimit.Config{
		HandshakeRate: r.IPHandshakeRate, HandshakeBurst: r.IPHandshakeBurst,
		MaxConns: r.IPMaxConnections, MaxTracked: r.IPMaxTracked,
		TrustedHeader: r.TrustedProxyHeader, TrustedProxies: proxies,
		MessageRate: r.ConnMessageRate, MessageBurst: r.ConnMessageBurst,
		Logger:     log.With("component", "ratelimit"),
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return l, nil
}

// Close releases a server that was built but will not be served (Listen
// failed, say): the event-handler workers, the history log, the WebSocket
// writers and the SignalR endpoint. Serve does this itself; calling Close
// after Serve, or twice, does nothing.
func (s *Server) Close() {
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	if s.sr != nil && s.sr.ln != nil {
		s.sr.ln.Close()
		s.sr.ln = nil
	}
	s.undo.run()
}

// newHistory opens the history log when a hub keeps history, and returns
// the idempotency index of REST sends (the log's, or one of its own).
func newHistory(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*history.Service, *history.Idempotency, error) {
	policies := historyPolicies(cfg)
	if len(policies) == 0 || cfg.Cluster.Enabled() { // a cluster keeps history in JetStream (newClusterHistory)
		return nil, history.NewIdempotency(cfg.History.IdempotencyWindow, cfg.History.IdempotencyKeys), nil
	}
	fsync, err := history.ParseFsyncPolicy(cfg.History.Fsync)
	if err != nil {
		return nil, nil, err
	}
	svc, err := history.New(history.Config{
		Dir:               filepath.Join(cfg.Server.DataDir, "history"),
		Fsync:             fsync,
		Policies:          policies,
		SegmentBytes:      int64(cfg.History.SegmentBytes),
		TrimInterval:      cfg.History.TrimInterval,
		ProbeInterval:     cfg.History.ProbeInterval,
		MaxReplay:         cfg.History.MaxReplay,
		IdempotencyWindow: cfg.History.IdempotencyWindow,
		IdempotencyKeys:   cfg.History.IdempotencyKeys,
		Logger:            log.With("component", "history"),
		Registerer:        reg,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("server: history: %w", err)
	}
	return svc, svc.Idempotency(), nil
}

// historyPolicies are the hubs' history rules.
func historyPolicies(cfg config.Config) history.Policies {
	policies := history.Policies{}
	for name, h := range cfg.Hubs {
		for _, r := range h.History {
			key := strings.ToLower(name)
			policies[key] = append(policies[key], history.Rule{Pattern: r.Pattern,
				Retention: history.Retention{MaxMessages: r.MaxMessages, MaxAge: r.MaxAge}})
		}
	}
	return policies
}

func closeHistory(h *history.Service) {
	if h != nil {
		h.Close()
	}
}

// closeUpstream stops the event-handler workers of a server that will not
// serve: nothing is queued yet, so it does not wait.
func closeUpstream(up *upstream.Client, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := up.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("closing the event handler client", "component", "upstream", "err", err)
	}
}

// historySummary is what GET /admin/history shows.
func historySummary(h *history.Service, js []*cluster.History) func() any {
	return func() any {
		if len(js) > 0 {
			return js[0].Summary()
		}
		if h == nil {
			return map[string]any{"policies": map[string]any{}, "enabled": false}
		}
		return h.Summary()
	}
}

// newWebSocket returns a WebSocket server with the configured limits and
// writers, and the given ping period and idle timeout (SignalR has its own).
func newWebSocket(cfg config.Config, ping, idle time.Duration, log *slog.Logger, reg prometheus.Registerer) (*websocket.Server, error) {
	return websocket.NewServer(websocket.Options{
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		WriteTimeout:    cfg.WebSocket.WriteTimeout,
		PingInterval:    ping,
		IdleTimeout:     idle,
		Writers:         cfg.WebSocket.Writers,
		WriteGather:     cfg.WebSocket.WriteGather,
		Logger:          log.With("component", "websocket"),
		Registerer:      reg,
	})
}

// nodeLimits are the per-conn limits of both namespaces' nodes.
func nodeLimits(cfg config.Config) core.Limits {
	return core.Limits{
		MaxQueueBytes:    cfg.Limits.MaxQueueBytes,
		MaxGroupsPerConn: cfg.Limits.MaxGroupsPerConn,
		ReplayMessages:   cfg.Reliable.ReplayMessages,
		ReplayBytes:      cfg.Reliable.ReplayBytes,
	}
}

// newUpstream returns the event-handler client, or nil when no hub has
// event handlers.
func newUpstream(cfg config.Config, ring *auth.KeyRing, log *slog.Logger, reg prometheus.Registerer, tracer *dashboard.Tracer) (*upstream.Client, error) {
	any := false
	for _, h := range cfg.Hubs {
		any = any || len(h.EventHandlers) > 0
	}
	if !any {
		return nil, nil
	}
	origin := cfg.Endpoint()
	if u, err := url.Parse(origin); err == nil {
		origin = u.Hostname()
	}
	for name, h := range cfg.Hubs {
		for i, uh := range handlers(h) {
			if err := uh.Validate(); err != nil {
				return nil, fmt.Errorf("hubs.%s.event_handlers[%d]: %w", name, i, err)
			}
		}
	}
	return upstream.New(upstream.Config{
		Keys:       ring,
		Origin:     origin,
		Handlers:   func(hub string) []upstream.Handler { return handlers(cfg.Hub(hub)) },
		Logger:     log.With("component", "upstream"),
		Registerer: reg,
		Observer:   callObserver(tracer),
	})
}

// handlers translates a hub's configured event handlers.
func handlers(h config.HubConfig) []upstream.Handler {
	hs := make([]upstream.Handler, 0, len(h.EventHandlers))
	for _, eh := range h.EventHandlers {
		hs = append(hs, upstream.Handler{URLTemplate: eh.URLTemplate, UserEvents: eh.UserEvents,
			SystemEvents: eh.SystemEvents, GroupPresenceEvents: eh.GroupPresenceEvents,
			AuthHeader: eh.AuthHeader, Timeout: eh.Timeout})
	}
	return hs
}

// Keys returns the access keys.
func (s *Server) Keys() *auth.KeyRing { return s.keys }

// Node returns the core node.
func (s *Server) Node() *core.Node { return s.node }

// Listen binds the configured addresses; Addr then tells which port.
func (s *Server) Listen() error {
	ln, err := listen(s.cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	ln = s.lis.wrap(ln, "main")
	if s.sr != nil {
		if err := s.sr.listen(); err != nil {
			ln.Close()
			return err
		}
	}
	s.ln = ln
	return nil
}

// listen binds addr without TCP keep-alive probes on the accepted connections: every
// protocol here checks liveness itself (WebSocket pings and the idle timeout, SSE
// keep-alive events, long-poll and HTTP idle timeouts), and the probes' setup is four
// system calls per accepted connection.
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: false}, KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// SignalREndpoint returns the public endpoint of the SignalR listener, ""
// when there is none.
func (s *Server) SignalREndpoint() string {
	if s.sr == nil {
		return ""
	}
	return s.sr.endpoint()
}

// SignalRConnectionString returns the SignalR connection string for the
// primary key, "" when there is no SignalR listener.
func (s *Server) SignalRConnectionString() string {
	if s.sr == nil {
		return ""
	}
	return auth.SignalRConnectionString(s.sr.endpoint(), s.keys.Primary())
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Endpoint returns the public endpoint: the configured one, or the bound
// address on localhost.
func (s *Server) Endpoint() string {
	return config.EndpointFor(s.cfg.Server.PublicEndpoint, s.lis.scheme(), s.cfg.Server.Addr, s.ln.Addr())
}

// ConnectionString returns the connection string for the primary key.
func (s *Server) ConnectionString() string {
	return auth.ConnectionString(s.Endpoint(), s.keys.Primary())
}

// Serve serves until ctx is done, then shuts down gracefully: it stops
// accepting, closes every session with 1001 after its queue drains, and
// waits at most server.shutdown_timeout. It must not run concurrently with
// Close.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			s.Close()
			return err
		}
	}
	s.undo = nil // from here on, Serve releases everything itself
	// Upgrades of the Web PubSub client endpoint are served by the front door, outside
	// net/http's per-connection machinery; every other connection goes to s.http.
	front := s.ws.NewFrontDoor(s.ln, "/client/hubs/", s.http.Handler, s.http.ReadHeaderTimeout)
	frontDone := make(chan struct{})
	go func() { defer close(frontDone); front.Serve() }()
	defer func() { front.Close(); <-frontDone }()
	errc := make(chan error, 2)
	go func() { errc <- s.http.Serve(front) }()
	serving := 1
	if s.sr != nil {
		s.sr.serve(errc)
		serving++
	}
	s.conn.start(s.log)
	s.serving.Store(true)
	select {
	case err := <-errc:
		s.serving.Store(false)
		s.conn.stop(context.Background())
		s.http.Close()
		s.ep.Close()
		s.ws.Close()
		if s.sr != nil {
			s.sr.http.Close()
			s.sr.closeNow()
		}
		for _, h := range s.jsHist {
			h.Close()
		}
		if s.clus != nil {
			closeCluster(s.clus, s.log)
		}
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.serving.Store(false) // the readiness probe says so while the sessions drain
	if s.dash != nil {
		s.dash.Close() // ends the live-trace streams, which Shutdown would wait for
	}
	s.log.Info("shutting down", "timeout", s.cfg.Server.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	var errs []error
	// First the connectors: each finishes its sends in flight and commits what was accepted,
	// while the sessions still receive them and the history is open.
	if err := s.conn.stop(sctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.http.Shutdown(sctx); err != nil { // closes the front door too
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	front.Close()
	<-frontDone // no connection accepted after this
	if err := front.Wait(sctx); err != nil {
		errs = append(errs, fmt.Errorf("waiting for upgrades under way: %w", err))
	}
	if err := s.node.Shutdown(sctx, "server shutting down"); err != nil {
		errs = append(errs, fmt.Errorf("closing sessions: %w", err))
	}
	if s.relays != nil { // their clients recover through another node
		s.relays.Shutdown(core.CloseGoingAway, "server shutting down")
	}
	s.ep.Close() // cancels the user events still waiting for a handler
	if err := s.ws.Wait(sctx); err != nil {
		errs = append(errs, fmt.Errorf("waiting for sockets: %w", err))
	}
	s.ws.Close()
	if s.up != nil { // after the sessions ended: their disconnected events are queued
		if err := s.up.Close(sctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing event handlers: %w", err))
		}
	}
	if s.sr != nil {
		errs = append(errs, s.sr.shutdown(sctx)...)
	}
	for _, h := range s.jsHist { // after the sessions and the REST calls: nothing stores any more
		h.Close()
	}
	if s.clus != nil { // after the sessions and the REST calls: nothing publishes any more
		if err := s.clus.Close(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.hist != nil { // after the sessions and the REST calls: nothing appends any more
		if err := s.hist.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing history: %w", err))
		}
	}
	for range serving {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
