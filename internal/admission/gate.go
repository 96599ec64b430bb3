package admission

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Kind says what a request does to the count of open connections.
type Kind int

const (
	// Other requests open no connection: they pass untouched (REST, /metrics).
	Other Kind = iota
	// Opens is a request that opens a connection (a WebSocket handshake, an SSE
	// stream, a negotiate): refused at the limit, counted while its handler runs.
	Opens
	// Holds is a request of a connection already open that holds its socket while its
	// handler runs (a long poll): counted, never refused.
	Holds
)

// Config configures a Gate.
type Config struct {
	// Max is the most connections open at once; 0 or less: no limit.
	Max int
	// Open counts the connections open outside any request handler (upgraded
	// WebSockets). nil: none.
	Open func() int
	// RetryAfter is the Retry-After of a refusal, in seconds; 0: 5.
	RetryAfter int
	// Registerer receives the metrics; nil: a private registry.
	Registerer prometheus.Registerer
	// Logger reports refusals, at most one line per 10 s; nil: not logged.
	Logger *slog.Logger
}

// Gate counts a node's open client connections and refuses new ones beyond
// Config.Max. One Gate serves both listeners. The check and the count are not one
// step: requests that arrive together may pass the limit by as many as are admitted at
// the same instant.
type Gate struct {
	max        int
	open       func() int
	retryAfter string
	inHandler  atomic.Int64 // requests of kind Opens or Holds inside their handler
	refused    *prometheus.CounterVec
	log        *slog.Logger
	lastLog    atomic.Int64 // unix nanoseconds of the last refusal logged
}

// New returns a Gate and registers its metrics.
func New(cfg Config) (*Gate, error) {
	if cfg.Open == nil {
		cfg.Open = func() int { return 0 }
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gate{max: cfg.Max, open: cfg.Open, retryAfter: strconv.Itoa(cfg.RetryAfter), log: cfg.Logger}
	var err error
	g.refused, err = metricreg.Register(cfg.Registerer, "admission", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "admission", Name: "refused_total",
		Help: "Requests that would have opened a client connection, refused with 503, by reason.",
	}, []string{"reason"}))
	if err != nil {
		return nil, err
	}
	g.refused.WithLabelValues(reasonMaxConnections) // the series exists from the start
	if _, err := metricreg.Register(cfg.Registerer, "admission", prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "admission", Name: "connections",
		Help: "Client connections open, as counted against limits.max_connections.",
	}, func() float64 { return float64(g.Open()) })); err != nil {
		return nil, err
	}
	if _, err := metricreg.Register(cfg.Registerer, "admission", prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "admission", Name: "max_connections",
		Help: "The limit of client connections open at once (limits.max_connections); 0: none.",
	}, func() float64 { return float64(max(g.max, 0)) })); err != nil {
		return nil, err
	}
	return g, nil
}

const reasonMaxConnections = "max_connections"

// Max returns the limit; 0 or less: none.
func (g *Gate) Max() int { return g.max }

// Open returns the connections counted now.
func (g *Gate) Open() int { return g.open() + int(g.inHandler.Load()) }

// Handler returns next behind the gate; kind sorts the requests.
func (g *Gate) Handler(next http.Handler, kind func(*http.Request) Kind) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := kind(r)
		if k == Other {
			next.ServeHTTP(w, r)
			return
		}
		if k == Opens && g.max > 0 && g.Open() >= g.max {
			g.refuse(w)
			return
		}
		g.inHandler.Add(1)
		defer g.inHandler.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// refuse answers 503 with the reason.
func (g *Gate) refuse(w http.ResponseWriter) {
	g.refused.WithLabelValues(reasonMaxConnections).Inc()
	now := time.Now().UnixNano()
	if last := g.lastLog.Load(); now-last >= int64(10*time.Second) && g.lastLog.CompareAndSwap(last, now) {
		g.log.Warn("refusing new client connections: at limits.max_connections", "max_connections", g.max)
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Retry-After", g.retryAfter)
	h.Set("x-ms-error-code", "TooManyConnections")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte("Too many connections: this server holds its limit of " + strconv.Itoa(g.max) +
		" open client connections (limits.max_connections); retry later.\n"))
}
