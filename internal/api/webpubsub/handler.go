package webpubsub

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/api/rest"
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
	// PublicEndpoint is the configured public base URL (server.public_endpoint) of nextLinks
	// and client token audiences; "" means the one the client used (rest.BaseURL: forwarding
	// headers, then the request).
	PublicEndpoint string
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
	public  string
	log     *slog.Logger
	routes  *rest.Router[action]
	metrics *rest.Metrics
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
	m, err := rest.NewMetrics(cfg.Registerer, "webpubsub")
	if err != nil {
		return nil, err
	}
	return &handler{
		node:    cfg.Node,
		history: cfg.History,
		sends:   durable.Sender{Keys: cfg.Idempotency, Replays: cfg.History},
		keys:    cfg.Keys,
		maxBody: cfg.MaxBodyBytes,
		public:  cfg.PublicEndpoint,
		log:     cfg.Logger.With("component", "api.webpubsub"),
		routes:  rest.NewRouter(routeTable()),
		metrics: m,
	}, nil
}

// ServeHTTP routes r, checks its token and runs its operation.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r, endSpan := rest.Trace(r, "webpubsub")
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
	h.metrics.Observe(op, status, start)
	endSpan(op, status)
}

// serve runs the request's operation and returns the operation's name for
// metrics, and an error to answer when the operation wrote nothing.
func (h *handler) serve(w *statusWriter, r *http.Request) (op string, err error) {
	path := r.URL.EscapedPath()
	segs, _, err := rest.SplitPath(path)
	if err != nil {
		return opUnknown, err
	}
	m := h.routes.Match(segs, r.Method)
	if !m.Found {
		if len(m.Allowed) > 0 {
			return opUnknown, rest.MethodNotAllowed(w, r.Method, m.Allowed)
		}
		return opUnknown, rest.NoRoute(r.Method, path)
	}
	act := m.Action
	if !act.anonymous {
		if err := h.authenticate(r); err != nil {
			writeUnauthorized(w, r, err)
			return act.op, nil
		}
	}
	q, err := rest.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return act.op, err
	}
	c := &call{w: w, raw: w.ResponseWriter, r: r, params: m.Params, query: q, public: h.public}
	if err := h.bind(c, m.Pattern); err != nil {
		return act.op, err
	}
	return act.op, act.serve(h, c)
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
