package webpubsub

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/metricreg"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// supportedVersions is the api-supported-versions header of every answer.
// Any api-version (or none) is accepted and served as 2024-12-01.
const supportedVersions = "2021-10-01, 2022-11-01, 2023-07-01, 2024-01-01, 2024-12-01"

// defaultAPIVersion is put in nextLink when the request had no api-version.
const defaultAPIVersion = "2024-12-01"

// Config configures the REST handler.
type Config struct {
	Node *core.Node    // required
	Keys *auth.KeyRing // required: verifies the bearer tokens and signs client tokens
	// MaxBodyBytes bounds request bodies; larger ones get 413. 0 means
	// DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// History, if set, serves GET …/groups/{group}/messages.
	History durable.History
	// Idempotency, if set, makes sends with an Idempotency-Key header
	// idempotent within its window.
	Idempotency *history.Idempotency
	Logger      *slog.Logger // default: discard
	// Registerer receives switchboard_rest_requests_total{operation,status}
	// and switchboard_rest_request_duration_seconds{operation}; default: a
	// private registry.
	Registerer prometheus.Registerer
}

// handler serves /api/.
type handler struct {
	node    *core.Node
	history durable.History
	sends   durable.Sender
	keys    *auth.KeyRing
	maxBody int64
	log     *slog.Logger
	routes  []route
	metrics *metrics
}

// NewHandler returns the REST data plane. It serves every path under /api/
// and expects to see the full request path (mount it at "/api/" without
// stripping the prefix).
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Node == nil {
		return nil, errors.New("webpubsub: Config.Node is required")
	}
	if cfg.Keys == nil {
		return nil, errors.New("webpubsub: Config.Keys is required")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("webpubsub: Config.MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &handler{
		node:    cfg.Node,
		history: cfg.History,
		sends:   durable.Sender{Keys: cfg.Idempotency, Replays: cfg.History},
		keys:    cfg.Keys,
		maxBody: cfg.MaxBodyBytes,
		log:     cfg.Logger.With("component", "api.webpubsub"),
		routes:  routeTable(),
		metrics: m,
	}, nil
}

// ServeHTTP routes r, checks its token and runs its operation.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set("api-supported-versions", supportedVersions)
	op, err := h.serve(sw, r)
	status := sw.status
	if err != nil {
		status = writeError(sw, r, err)
	}
	if status == 0 {
		status = http.StatusOK
	}
	if status >= 500 {
		h.log.Warn("rest request failed", "operation", op, "method", r.Method, "path", r.URL.EscapedPath(),
			"status", status, "err", err)
	}
	h.metrics.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	h.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// serve runs the request's operation and returns the operation's name for
// metrics, and an error to answer when the operation wrote nothing.
func (h *handler) serve(w *statusWriter, r *http.Request) (op string, err error) {
	path := r.URL.EscapedPath()
	segs, err := splitPath(path)
	if err != nil {
		return opUnknown, err
	}
	rt, p, allowed := matchRoute(h.routes, segs, r.Method)
	if rt == nil {
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			return opUnknown, errMethod(r.Method, allowed)
		}
		return opUnknown, errNoRoute(r.Method, path)
	}
	if !rt.anonymous {
		if err := h.authenticate(r); err != nil {
			writeUnauthorized(w, r, err)
			return rt.op, nil
		}
	}
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return rt.op, err
	}
	c := &call{w: w, raw: w.ResponseWriter, r: r, params: p, query: q}
	if err := h.bind(c, rt.pattern); err != nil {
		return rt.op, err
	}
	return rt.op, rt.serve(h, c)
}

// authenticate checks the request's bearer token against its path.
func (h *handler) authenticate(r *http.Request) error {
	hdr := r.Header.Get("Authorization")
	if hdr == "" {
		return auth.ErrTokenMissing
	}
	token, ok := auth.BearerToken(hdr)
	if !ok {
		return fmt.Errorf("%w: Authorization is not a Bearer token", auth.ErrTokenMalformed)
	}
	return h.keys.VerifyServerToken(token, r.URL.Path, time.Now())
}

// statusWriter remembers the status written, for metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests, err := metricreg.Register(reg, "webpubsub", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "rest", Name: "requests_total",
		Help: "Web PubSub REST requests, by operation and status code.",
	}, []string{"operation", "status"}))
	if err != nil {
		return nil, err
	}
	duration, err := metricreg.Register(reg, "webpubsub", prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "switchboard", Subsystem: "rest", Name: "request_duration_seconds",
		Help:    "Time to answer Web PubSub REST requests, by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"operation"}))
	if err != nil {
		return nil, err
	}
	return &metrics{requests: requests, duration: duration}, nil
}
