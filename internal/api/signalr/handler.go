package signalr

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

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is 0 (spec §7.1: 1 MB).
const DefaultMaxBodyBytes = 1 << 20

// Config configures the SignalR REST handler.
type Config struct {
	// Node is the SignalR namespace's node (not the Web PubSub one); required.
	Node *core.Node
	// Keys verifies the bearer tokens and signs the tokens of :generateToken; required.
	Keys *auth.KeyRing
	// PublicEndpoint is the configured public base URL (signalr.public_endpoint) of nextLinks
	// and of the audience of the client tokens :generateToken mints; "" means the one the
	// client used (rest.BaseURL: forwarding headers, then the request).
	PublicEndpoint string
	// MaxBodyBytes bounds request bodies; a larger one gets 413. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// InvokeTimeout bounds how long :invoke waits for the client's answer (the request's own
	// context can end it sooner). 0 means DefaultInvokeTimeout.
	InvokeTimeout time.Duration
	// History, if set, serves the catch-up read GET …/groups/{group}/messages and counts the
	// sends answered from Idempotency: the SignalR namespace's history (history.Namespaced).
	History durable.History
	// Idempotency, if set, makes sends with an Idempotency-Key header idempotent within its
	// window. It must be the SignalR namespace's view of the index
	// (history.Idempotency.Namespace), so that its keys never meet the Web PubSub API's.
	Idempotency *history.Idempotency
	Logger      *slog.Logger // default: discard
	// Registerer receives switchboard_rest_requests_total{operation,status} and
	// switchboard_rest_request_duration_seconds{operation}, shared with the Web PubSub API
	// when both use one registry; default: a private registry.
	Registerer prometheus.Registerer
}

// handler serves /api/ on the SignalR listener.
type handler struct {
	node    *core.Node
	history durable.History
	sends   durable.Sender
	keys    *auth.KeyRing
	public  string
	maxBody int64
	// invokeTimeout bounds the wait of :invoke for the client's answer.
	invokeTimeout time.Duration
	log           *slog.Logger
	routes        *rest.Router[action]
	metrics       *rest.Metrics
}

// NewHandler returns the SignalR data-plane REST API. It serves every path under /api/ and
// needs the full request path (mount it at "/api/" without stripping the prefix).
func NewHandler(cfg Config) (http.Handler, error) {
	switch {
	case cfg.Node == nil:
		return nil, errors.New("signalr: Config.Node is required")
	case cfg.Keys == nil:
		return nil, errors.New("signalr: Config.Keys is required")
	case cfg.MaxBodyBytes < 0:
		return nil, fmt.Errorf("signalr: Config.MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	case cfg.InvokeTimeout < 0:
		return nil, fmt.Errorf("signalr: Config.InvokeTimeout %s is negative", cfg.InvokeTimeout)
	}
	h := &handler{
		node:          cfg.Node,
		history:       cfg.History,
		sends:         durable.Sender{Keys: cfg.Idempotency, Replays: cfg.History},
		keys:          cfg.Keys,
		public:        cfg.PublicEndpoint,
		maxBody:       cfg.MaxBodyBytes,
		invokeTimeout: cfg.InvokeTimeout,
		log:           cfg.Logger,
		routes:        rest.NewRouter(routes()),
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.invokeTimeout == 0 {
		h.invokeTimeout = DefaultInvokeTimeout
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "api.signalr")
	var err error
	if h.metrics, err = rest.NewMetrics(cfg.Registerer, "signalr"); err != nil {
		return nil, err
	}
	return h, nil
}

// ServeHTTP routes r, checks its token, runs its operation and counts the answer.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	r, endSpan := rest.Trace(r, "signalr")
	op, gen, status, err := h.run(w, r)
	if err != nil {
		status = writeFailure(w, r, gen, err)
		if status >= http.StatusInternalServerError && status != http.StatusNotImplemented {
			h.log.Warn("rest request failed", "operation", op, "method", r.Method,
				"path", r.URL.EscapedPath(), "status", status, "err", err)
		}
	}
	h.metrics.Observe(op, status, start)
	endSpan(op, status)
}

// run serves r. It returns the operation's name and the path's generation, and either the
// status it answered with or the error to answer.
func (h *handler) run(w http.ResponseWriter, r *http.Request) (op string, gen apiGen, status int, err error) {
	gen, segs, inAPI, err := parsePath(r.URL.EscapedPath())
	if err != nil {
		return opUnknown, gen, 0, err
	}
	var m rest.Match[action]
	if inAPI {
		m = h.routes.Match(segs, r.Method)
	}
	switch {
	case len(m.Allowed) > 0:
		return opUnknown, gen, 0, rest.MethodNotAllowed(w, r.Method, m.Allowed)
	case !m.Found:
		return opUnknown, gen, 0, rest.NoRoute(r.Method, r.URL.EscapedPath())
	}
	act := m.Action
	if !act.anonymous {
		if err := h.authenticate(r); err != nil {
			return act.op, gen, 0, unauthorized(err)
		}
	}
	c, err := h.newCall(w, r, gen, m.Pattern, m.Params)
	if err == nil {
		err = act.serve(h, c)
	}
	switch {
	case err != nil:
		return act.op, gen, 0, err
	case c.status == 0: // the operation wrote nothing: answer the route's status
		c.status = act.ok[gen]
		w.WriteHeader(c.status)
	}
	return act.op, gen, c.status, nil
}

// authenticate checks the bearer token: signature, exp, and aud naming the request's decoded
// path (spec §3.3: query, scheme, host and port are ignored, case too).
func (h *handler) authenticate(r *http.Request) error {
	header := r.Header.Get("Authorization")
	token, isBearer := auth.BearerToken(header)
	switch {
	case isBearer:
		return h.keys.VerifyServerToken(token, r.URL.Path, time.Now())
	case header == "":
		return auth.ErrTokenMissing
	default:
		return fmt.Errorf("%w: the Authorization header holds no Bearer token", auth.ErrTokenMalformed)
	}
}
