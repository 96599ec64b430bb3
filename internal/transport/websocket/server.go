package websocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/latency"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Options configure a Server. Zero fields take the defaults given.
type Options struct {
	MaxMessageBytes int           // largest client message; default 1 MiB; larger closes with 1009
	WriteTimeout    time.Duration // a socket that accepts no bytes for this long is dropped; default 10s
	PingInterval    time.Duration // WebSocket ping period; default 20s
	IdleTimeout     time.Duration // a socket silent this long is dropped; default 3×PingInterval
	Writers         int           // writer goroutines; default GOMAXPROCS
	// ReadGoroutines keeps one read goroutine per socket instead of parking
	// idle sockets in an epoll poller (Linux); the poller is the default.
	ReadGoroutines bool
	// WriteGather is the shortest time between two write passes of a busy
	// writer: messages queued within it share one write per socket. 0 turns
	// gathering off (every wake-up writes at once); negative means 0.
	WriteGather time.Duration
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// Server upgrades requests and runs the writers of its sockets.
type Server struct {
	opts    Options
	writers []*writer
	poller  *poller // nil: one read goroutine per socket
	metrics *metrics
	log     *slog.Logger

	live atomic.Int64 // open sockets

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// NewServer starts a Server's writers; Close stops them.
func NewServer(opts Options) (*Server, error) {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 1 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 20 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 3 * opts.PingInterval
	}
	if opts.Writers <= 0 {
		opts.Writers = runtime.GOMAXPROCS(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, metrics: m, log: opts.Logger, stop: make(chan struct{})}
	if !opts.ReadGoroutines {
		if p, err := newPoller(); err == nil {
			s.poller = p
			s.wg.Add(1)
			go func() { defer s.wg.Done(); p.run(s.stop) }()
		}
	}
	for i := 0; i < opts.Writers; i++ {
		w := newWriter(s)
		s.writers = append(s.writers, w)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); w.run() }()
	}
	return s, nil
}

// Close stops the writers. Sockets still open are closed.
func (s *Server) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	if s.poller != nil {
		s.poller.close()
	}
}

// Wait returns once no socket is open, or when ctx is done.
func (s *Server) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.live.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Sockets returns the number of open sockets.
func (s *Server) Sockets() int { return int(s.live.Load()) }

// ErrNotWebSocket is returned by Upgrade for a request that is not a
// WebSocket handshake; Upgrade has answered it already.
var ErrNotWebSocket = errors.New("websocket: not a websocket handshake")

// IsUpgrade reports whether r asks for a WebSocket upgrade.
func IsUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header.Get("Upgrade"), "websocket")
}

// Upgrade completes the handshake of r, echoing subprotocol when it is not
// empty, and returns the new socket. The socket reads nothing until Serve and
// writes nothing but close frames until Bind.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request, subprotocol string) (*Socket, error) {
	up := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout}
	if subprotocol != "" {
		up.Protocol = func(p string) bool { return p == subprotocol }
	}
	if fr, ok := w.(*frontResponse); ok {
		return s.upgradeFront(up, fr, r)
	}
	tcp, _ := r.Context().Value(connKey{}).(net.Conn)
	corked := tcp != nil && cork(tcp)
	conn, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if corked {
			uncork(tcp) // the connection may serve more HTTP requests
		}
		if conn != nil {
			conn.Close()
		}
		s.metrics.handshakeErrors.Inc()
		return nil, fmt.Errorf("%w: %v", ErrNotWebSocket, err)
	}
	sock := newSocket(s, conn, rw.Reader, nil)
	sock.corked.Store(corked && conn == tcp)
	if corked && conn != tcp {
		uncork(tcp)
	}
	return sock, nil
}

// upgradeFront upgrades a request the FrontDoor serves. Its hijacked writer keeps the 101
// response in memory, and the socket's first write sends it with the first frames: one
// write, with no TCP_CORK around it.
func (s *Server) upgradeFront(up ws.HTTPUpgrader, fr *frontResponse, r *http.Request) (*Socket, error) {
	up.Timeout = 0 // nothing is written to the connection here
	conn, rw, _, err := up.Upgrade(r, fr)
	if err != nil {
		s.metrics.handshakeErrors.Inc() // before the client can see the response
		if conn != nil {
			conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
			conn.Write(fr.held.Bytes()) // the upgrader's error response
			conn.Close()
		}
		return nil, fmt.Errorf("%w: %v", ErrNotWebSocket, err)
	}
	return newSocket(s, conn, rw.Reader, fr.held.Bytes()), nil
}

// connKey is the request-context key of the request's connection.
type connKey struct{}

// ConnContext is an http.Server ConnContext hook: it makes the connection
// known to Upgrade, which then sends the 101 response and the socket's first
// frames (the protocol's welcome) in one TCP segment. Without it, Upgrade
// works the same with one segment more.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func headerHasToken(v, token string) bool {
	for len(v) > 0 {
		var part string
		part, v, _ = cutComma(v)
		if equalFoldTrim(part, token) {
			return true
		}
	}
	return false
}

func cutComma(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func equalFoldTrim(s, t string) bool {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i]|0x20, t[i]|0x20
		if a != b {
			return false
		}
	}
	return true
}

type metrics struct {
	framesIn, bytesIn   prometheus.Counter
	framesOut, bytesOut prometheus.Counter
	writes              prometheus.Counter
	closes              *prometheus.CounterVec
	handshakeErrors     prometheus.Counter
	stalls              prometheus.Counter
	sockets             prometheus.Gauge
	badFrames           *prometheus.CounterVec
	partialMessages     prometheus.Gauge
	partialBytes        prometheus.Gauge
	latency             *latency.Histogram // each writer observes on a shard of its own
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "websocket", Name: name, Help: help})
	}
	m := &metrics{
		framesIn:        counter("frames_in_total", "Data messages read from clients."),
		bytesIn:         counter("bytes_in_total", "Payload bytes read from clients."),
		framesOut:       counter("frames_out_total", "Frames written to clients."),
		bytesOut:        counter("bytes_out_total", "Bytes written to clients, headers included."),
		writes:          counter("writes_total", "Write system calls; frames_out_total / writes_total is the coalescing factor."),
		handshakeErrors: counter("handshake_errors_total", "Upgrade requests that failed the WebSocket handshake."),
		stalls:          counter("stalls_total", "Times a socket did not take a batch at once and moved to its own slow-lane goroutine."),
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "websocket", Name: "sockets",
			Help: "Open WebSocket connections."}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "websocket", Name: "closes_total",
			Help: "Closed sockets by cause."}, []string{"cause"}),
		badFrames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "websocket", Name: "protocol_errors_total",
			Help: "Sockets closed for breaking RFC 6455 or a limit, by close code and reason."}, []string{"code", "reason"}),
		partialMessages: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "websocket", Name: "partial_messages",
			Help: "Client messages being read that had not arrived whole: their sockets wait for the rest."}),
		partialBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "websocket", Name: "partial_message_bytes",
			Help: "Buffer bytes held by the messages of switchboard_websocket_partial_messages: at most twice the bytes received, plus 512, each."}),
	}
	// Every field is registered on reg, or replaced by the identical
	// collector a second server (the SignalR listener's) registered before.
	var err error
	for _, c := range []*prometheus.Counter{&m.framesIn, &m.bytesIn, &m.framesOut, &m.bytesOut, &m.writes, &m.handshakeErrors, &m.stalls} {
		if *c, err = metricreg.Register(reg, "websocket", *c); err != nil {
			return nil, err
		}
	}
	for _, g := range []*prometheus.Gauge{&m.sockets, &m.partialMessages, &m.partialBytes} {
		if *g, err = metricreg.Register(reg, "websocket", *g); err != nil {
			return nil, err
		}
	}
	if m.closes, err = metricreg.Register(reg, "websocket", m.closes); err != nil {
		return nil, err
	}
	if m.badFrames, err = metricreg.Register(reg, "websocket", m.badFrames); err != nil {
		return nil, err
	}
	if m.latency, err = metricreg.Register(reg, "websocket", latency.New()); err != nil {
		return nil, err
	}
	return m, nil
}
