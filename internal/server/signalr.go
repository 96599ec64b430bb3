package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	apisr "github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/cluster"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dashboard"
	sr "github.com/switchboardhq/switchboard/internal/dialect/signalr"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/sessionlimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// signalRService is the Azure SignalR Service endpoint: its own listener
// (the REST paths of both services are the same), its own namespace of hubs
// (a second core node) and its own WebSocket server (SignalR's keep-alive
// and client timeout), sharing keys, limits and metrics with the rest.
type signalRService struct {
	cfg  config.Config
	log  *slog.Logger
	node *core.Node
	ws   *websocket.Server
	ep   *sr.Endpoint
	up   *upstream.SignalRClient // nil when no upstream is configured
	http *http.Server
	ln   net.Listener
	lis  *listeners
	// relays carry WebSockets between this node and the node of their
	// connection; nil on a single node.
	relays *cluster.Relays
}

// signalRNamespace names the SignalR hubs' streams in the history log and their keys in the
// idempotency index ("signalr/<hub>"), apart from the Web PubSub hubs of the same names.
const signalRNamespace = "signalr"

// newSignalR assembles the SignalR endpoint. coreHist and restHist are the SignalR namespace's
// history for its node and its REST API (nil interfaces when no hub keeps history), idem its view
// of the idempotency index.
func newSignalR(cfg config.Config, ring *auth.KeyRing, log *slog.Logger, reg prometheus.Registerer,
	series *core.HubSeries, coreHist core.History, restHist durable.History, idem *history.Idempotency, rates *ratelimit.Limiter, users *sessionlimit.Limiter, lis *listeners,
	broker core.Broker, clus *cluster.Cluster, tracer *dashboard.Tracer) (_ *signalRService, err error) {
	s := &signalRService{cfg: cfg, log: log, lis: lis}
	defer func() {
		if err != nil {
			s.closeNow() // what was started before the failure
		}
	}()
	if len(cfg.SignalR.Upstreams) > 0 {
		ups := make([]upstream.SignalRUpstream, len(cfg.SignalR.Upstreams))
		for i, u := range cfg.SignalR.Upstreams {
			ups[i] = upstream.SignalRUpstream{URLTemplate: u.URLTemplate, HubPattern: u.HubPattern,
				CategoryPattern: u.CategoryPattern, EventPattern: u.EventPattern, AuthHeader: u.AuthHeader, Timeout: u.Timeout}
			if err := ups[i].Validate(); err != nil {
				return nil, fmt.Errorf("signalr.upstreams[%d]: %w", i, err)
			}
		}
		up, err := upstream.NewSignalR(upstream.SignalRConfig{
			Keys:       ring,
			Upstreams:  func(string) []upstream.SignalRUpstream { return ups },
			Logger:     log,
			Registerer: reg,
			Observer:   callObserver(tracer),
		})
		if err != nil {
			return nil, err
		}
		s.up = up
	}
	node, err := core.NewNode(core.Config{
		NodeID:         cfg.Server.NodeID,
		Broker:         broker, // nil: core's own
		Limits:         nodeLimits(cfg),
		RecoveryWindow: cfg.SignalR.ReconnectWindow,
		History:        coreHist,
		Logger:         log.With("component", "core"),
		Registerer:     reg,
		OnConnEnd:      func(c *core.Conn, reason string) { s.ep.ConnEnded(c, reason) },
		Observer:       nodeObserver(tracer, signalRNamespace),
		MaxHubs:        cfg.Limits.MaxHubs,
		HubIdleTimeout: cfg.Limits.HubIdleTimeout,
		HubSeries:      series,
		Namespace:      "signalr",
		PresenceNotify: presenceNotify(cfg, "signalr"),
	})
	if err != nil {
		return nil, err
	}
	s.node = node
	s.ws, err = newWebSocket(cfg, cfg.SignalR.KeepAlive, cfg.SignalR.ClientTimeout, log, reg)
	if err != nil {
		return nil, err
	}
	epCfg := sr.EndpointConfig{
		Node: node, Keys: ring, WebSocket: s.ws,
		StatefulReconnect: cfg.SignalR.StatefulReconnect,
		KeepAlive:         cfg.SignalR.KeepAlive,
		HandshakeTimeout:  cfg.SignalR.HandshakeTimeout,
		NegotiateTimeout:  cfg.SignalR.NegotiateTimeout,
		LongPollTimeout:   cfg.SignalR.LongPollTimeout,
		LongPollGap:       cfg.SignalR.LongPollGap,
		MaxMessageBytes:   cfg.Limits.MaxMessageBytes,
		RateLimits:        rates,
		UserLimits:        users,
		Logger:            log.With("component", "signalr"),
		Registerer:        reg,
	}
	if s.up != nil {
		epCfg.Upstream = s.up
	}
	if s.ep, err = sr.NewEndpoint(epCfg); err != nil {
		return nil, err
	}
	if clus != nil {
		if s.relays, err = clus.Relays(clusterNamespaceSignalR, s.ep.AcceptRelay, s.ep.AnswerRelay, signalRRelayConfig(cfg)); err != nil {
			return nil, err
		}
		s.ep.UseRelays(s.relays)
	}
	rest, err := apisr.NewHandler(apisr.Config{
		Node: node, Keys: ring, PublicEndpoint: cfg.SignalR.PublicEndpoint, MaxBodyBytes: int64(cfg.Limits.MaxBodyBytes),
		History: restHist, Idempotency: idem,
		Logger: log.With("component", "api"), Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/client/", s.ep)
	mux.Handle("/client", s.ep)
	mux.Handle("/api/", rest)
	s.http = httpServer(clientCORS(lis.gate.Handler(mux, signalRKind)), cfg.Server.ReadTimeout, log)
	return s, nil
}

func (s *signalRService) listen() error {
	ln, err := listen(s.cfg.SignalR.Addr)
	if err != nil {
		return fmt.Errorf("server: signalr listen: %w", err)
	}
	s.ln = s.lis.wrap(ln, "signalr")
	return nil
}

// endpoint is the public SignalR endpoint: the configured one, or the bound
// address.
func (s *signalRService) endpoint() string {
	var bound net.Addr
	if s.ln != nil {
		bound = s.ln.Addr()
	}
	return config.EndpointFor(s.cfg.SignalR.PublicEndpoint, s.lis.scheme(), s.cfg.SignalR.Addr, bound)
}

// serve serves until the listener closes; errc gets its end.
func (s *signalRService) serve(errc chan<- error) {
	go func() { errc <- s.http.Serve(s.ln) }()
}

// shutdown stops taking requests, tells every client to reconnect (Close
// with allowReconnect), waits for the sockets, and flushes the upstream.
func (s *signalRService) shutdown(ctx context.Context) []error {
	// Sessions first: event streams and held polls are HTTP handlers that
	// only return once their connection is closed.
	var errs []error
	if err := s.node.Shutdown(ctx, "server shutting down"); err != nil {
		errs = append(errs, fmt.Errorf("closing signalr sessions: %w", err))
	}
	if s.relays != nil { // their clients reconnect through another node
		s.relays.Shutdown(core.CloseGoingAway, "server shutting down")
	}
	s.ep.Close()
	if err := s.http.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("signalr http shutdown: %w", err))
	}
	if err := s.ws.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("waiting for signalr sockets: %w", err))
	}
	s.ws.Close()
	if s.up != nil {
		if err := s.up.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flushing signalr upstream: %w", err))
		}
	}
	return errs
}

// closeNow releases what newSignalR started (all of it, or what it had
// started when it failed) when the server does not serve.
func (s *signalRService) closeNow() {
	if s.ws != nil {
		s.ws.Close()
	}
	if s.ep != nil {
		s.ep.Close()
	}
	if s.up != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.up.Close(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("closing the signalr upstream", "component", "upstream", "err", err)
		}
	}
}

// clientCORS gives every answer of the client endpoint its CORS headers, the admission
// gate's 503 included (it answers before the endpoint): without them a browser's SignalR
// client sees a network error, not the refusal and its Retry-After.
func clientCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/client" || strings.HasPrefix(r.URL.Path, "/client/") {
			sr.AllowCORS(w, r)
		}
		next.ServeHTTP(w, r)
	})
}
