package webpubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// InvokeConfig bounds the invocations of JSON clients (invoke requests:
// a user event whose handler's answer comes back as an invokeResponse).
type InvokeConfig struct {
	// Timeout bounds one invocation, from its request to its answer; the
	// handler's own timeout applies too. 0 means DefaultInvokeTimeout.
	Timeout time.Duration
	// MaxPerConn bounds the invocations one connection has in flight; one
	// more is refused with TooManyRequests. 0 means DefaultMaxInvocations.
	MaxPerConn int
}

// Defaults of InvokeConfig.
const (
	DefaultInvokeTimeout  = 30 * time.Second
	DefaultMaxInvocations = 16
)

// maxInvocationID bounds the invocationId a client may use (it is kept as
// a map key while the invocation runs).
const maxInvocationID = 256

// Error names of invokeResponse. The service documents none and the official
// clients branch on none (they hand the error to the caller).
const (
	invokeBadRequest   = "BadRequest"        // the invoke request itself is wrong
	invokeDuplicate    = "Duplicate"         // its invocationId is in flight on the connection
	invokeNoHandler    = "NoEventHandler"    // no event handler takes the event
	invokeTimeout      = "Timeout"           // invoke.timeout or the handler's timeout passed
	invokeHandlerError = "EventHandlerError" // the handler failed, answered 4xx/5xx or badly
	invokeCancelled    = "Cancelled"         // the server is shutting down
)

// Outcomes of invocations (switchboard_invocations_total{outcome}).
const (
	outcomeSuccess      = "success"
	outcomeHandlerError = "handler_error"
	outcomeTimeout      = "timeout"
	outcomeCancelled    = "cancelled" // by the client (cancelInvocation): no answer
	outcomeNoHandler    = "no_handler"
	outcomeRefused      = "refused" // bad request, duplicate id, over the limits
	outcomeClosed       = "closed"  // the connection ended or the server is shutting down
)

type invokeMetrics struct {
	total    *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newInvokeMetrics() *invokeMetrics {
	return &invokeMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "invocations_total",
			Help: "Client invocations (invoke requests) by dialect and outcome: success, handler_error, timeout, cancelled (by the client), no_handler, refused, closed."},
			[]string{"dialect", "outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Name: "invocations_in_flight",
			Help: "Client invocations waiting for their event handler."}),
	}
}

// invocations are the invocations in flight of every connection of the
// endpoint, by connection id. They belong to the connection, not to its
// socket: a reliable session's invocation keeps running while its client
// is away, and its answer is replayed when the client recovers.
type invocations struct {
	cfg     InvokeConfig
	metrics *invokeMetrics

	byConn sync.Map // conn id → *connInvocations

	mu     sync.Mutex // guards closed and the Add of wg
	closed bool
	wg     sync.WaitGroup // one per invocation goroutine
}

// connInvocations are one connection's invocations in flight.
type connInvocations struct {
	mu      sync.Mutex
	pending map[string]*invocation
	ended   bool
}

type invocation struct {
	cancel    context.CancelFunc
	cancelled bool // by the client: its answer is dropped
}

// start registers invocation id of conn, or says why it cannot run.
func (iv *invocations) start(conn *core.Conn, id string, cancel context.CancelFunc) (name, msg string) {
	v, _ := iv.byConn.LoadOrStore(conn.ID(), &connInvocations{})
	ci := v.(*connInvocations)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	switch {
	case ci.ended || conn.Ended():
		if len(ci.pending) == 0 { // an entry made now would outlive the conn
			iv.byConn.CompareAndDelete(conn.ID(), ci)
		}
		return invokeCancelled, "the connection has ended"
	case ci.pending[id] != nil:
		return invokeDuplicate, fmt.Sprintf("invocation %s is already in flight on this connection", excerpt.Quote(id))
	case len(ci.pending) >= iv.cfg.MaxPerConn:
		return ackTooManyRequests, fmt.Sprintf("the connection already has %d invocations in flight (invoke.max_per_conn); this one was not started", iv.cfg.MaxPerConn)
	}
	iv.mu.Lock()
	defer iv.mu.Unlock()
	if iv.closed {
		return invokeCancelled, "the server is shutting down"
	}
	if ci.pending == nil {
		ci.pending = make(map[string]*invocation)
	}
	ci.pending[id] = &invocation{cancel: cancel}
	iv.wg.Add(1)
	iv.metrics.inFlight.Inc()
	return "", ""
}

// finish forgets invocation id of conn and reports whether its client
// cancelled it.
func (iv *invocations) finish(conn *core.Conn, id string) (cancelled bool) {
	iv.metrics.inFlight.Dec()
	v, ok := iv.byConn.Load(conn.ID())
	if !ok {
		return false
	}
	ci := v.(*connInvocations)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	if inv := ci.pending[id]; inv != nil {
		cancelled = inv.cancelled
		delete(ci.pending, id)
	}
	if len(ci.pending) == 0 && (ci.ended || conn.Ended()) {
		iv.byConn.CompareAndDelete(conn.ID(), ci)
	}
	return cancelled
}

// cancel cancels invocation id of conn at its client's request; it reports
// whether one was in flight.
func (iv *invocations) cancel(conn *core.Conn, id string) bool {
	v, ok := iv.byConn.Load(conn.ID())
	if !ok {
		return false
	}
	ci := v.(*connInvocations)
	ci.mu.Lock()
	defer ci.mu.Unlock()
	inv := ci.pending[id]
	if inv == nil || inv.cancelled {
		return false
	}
	inv.cancelled = true
	inv.cancel()
	return true
}

// connEnded cancels the invocations of a connection that ended: nobody is
// left to answer.
func (iv *invocations) connEnded(conn *core.Conn) {
	v, ok := iv.byConn.Load(conn.ID())
	if !ok {
		return
	}
	ci := v.(*connInvocations)
	ci.mu.Lock()
	ci.ended = true
	for _, inv := range ci.pending {
		inv.cancel()
	}
	if len(ci.pending) == 0 {
		iv.byConn.CompareAndDelete(conn.ID(), ci)
	}
	ci.mu.Unlock()
}

// close refuses new invocations and waits for those in flight, which the
// endpoint's context (cancelled first) ends.
func (iv *invocations) close() {
	iv.mu.Lock()
	iv.closed = true
	iv.mu.Unlock()
	iv.wg.Wait()
}

// invoke starts a client's invocation: its event goes to the event handler
// on a goroutine of its own, so the connection's next messages do not wait
// for the answer; at most invoke.max_per_conn run at once per connection.
func (s *session) invoke(r *request) error {
	if r.InvocationID == "" || len(r.InvocationID) > maxInvocationID {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "bad_invocation_id").Inc()
		s.ep.inv.metrics.total.WithLabelValues(s.dialect, outcomeRefused).Inc()
		return &websocket.CloseError{Code: 1007, Reason: fmt.Sprintf("invoke requires an invocationId of 1 to %d bytes", maxInvocationID)}
	}
	if r.Target != "" && r.Target != "event" {
		return s.refuseInvoke(r, "bad_target", outcomeRefused, invokeBadRequest, fmt.Sprintf("invoke target %s is not supported: the only target is \"event\"", excerpt.Quote(r.Target)))
	}
	if !validEvent(r.Event) {
		return s.refuseInvoke(r, "bad_event", outcomeRefused, invokeBadRequest, fmt.Sprintf("invalid event name %s", excerpt.Quote(r.Event)))
	}
	contentType, payload := "application/octet-stream", []byte(nil) // no data: an empty body
	if r.DataType != "" || len(r.Data) > 0 {
		typ, p, err := r.payload()
		if err != nil {
			return s.refuseInvoke(r, "bad_data", outcomeRefused, invokeBadRequest, excerpt.Error(err))
		}
		contentType, payload = contentTypes[typ], p
	}
	if s.ep.up == nil || !s.ep.up.HasUserHandler(s.hub.Name(), r.Event) {
		return s.refuseInvoke(r, "no_handler", outcomeNoHandler, invokeNoHandler,
			fmt.Sprintf("no event handler is configured for event %s in hub %q", excerpt.Quote(r.Event), s.hub.Name()))
	}
	ctx, cancel := context.WithTimeout(s.ep.ctx, s.ep.inv.cfg.Timeout)
	if name, msg := s.ep.inv.start(s.conn, r.InvocationID, cancel); name != "" {
		cancel()
		metric, outcome := "invoke_limit", outcomeRefused
		switch name {
		case invokeDuplicate:
			metric = "invoke_duplicate"
		case invokeCancelled:
			metric, outcome = "invoke_closed", outcomeClosed
		}
		return s.refuseInvoke(r, metric, outcome, name, msg)
	}
	call := invocationCall{ep: s.ep, conn: s.conn, dialect: s.dialect, id: r.InvocationID, event: r.Event}
	go call.run(ctx, cancel, contentType, payload)
	return nil
}

// refuseInvoke answers an invocation that does not start with an error.
func (s *session) refuseInvoke(r *request, metric, outcome, name, msg string) error {
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
	s.ep.inv.metrics.total.WithLabelValues(s.dialect, outcome).Inc()
	s.ep.reply(s.conn, encodeInvokeError(r.InvocationID, name, msg))
	return nil
}

// cancelInvocation drops the answer of one of the client's invocations and
// cancels its request to the handler if it still runs. An unknown id (one
// that was answered already) is ignored.
func (s *session) cancelInvocation(r *request) error {
	s.ep.inv.cancel(s.conn, r.InvocationID)
	return nil
}

// reply queues an invokeResponse body (see encodeInvokeError) for conn: it
// is sequenced and replayed like a data message on the reliable protocol.
func (e *Endpoint) reply(conn *core.Conn, body []byte) {
	conn.DeliverReply(&core.Message{Type: core.Framed, Data: body}, e.inv.cfg.MaxPerConn)
}

// invocationCall is one invocation in flight. It holds the connection, not
// the session: a reliable client may come back on another socket.
type invocationCall struct {
	ep      *Endpoint
	conn    *core.Conn
	dialect string
	id      string
	event   string
}

// run sends the event, waits for the handler's answer and sends it to the
// client, unless the client cancelled the invocation or has gone.
func (c invocationCall) run(ctx context.Context, cancel context.CancelFunc, contentType string, payload []byte) {
	defer c.ep.inv.wg.Done()
	defer cancel()
	resp, err := c.ep.up.UserEvent(ctx, upConn(c.conn), c.event, contentType, payload)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	endpointClosed := c.ep.ctx.Err() != nil
	if c.ep.inv.finish(c.conn, c.id) {
		c.ep.inv.metrics.total.WithLabelValues(c.dialect, outcomeCancelled).Inc()
		return
	}
	if c.conn.Ended() {
		c.ep.inv.metrics.total.WithLabelValues(c.dialect, outcomeClosed).Inc()
		return
	}
	if err != nil {
		name, msg, outcome := invokeFailure(err, timedOut, endpointClosed, c.ep.inv.cfg.Timeout)
		if outcome == outcomeHandlerError {
			// The error names the handler's URL and the network error: they
			// are for the operator's log, not for the client.
			c.ep.log.Warn("invocation failed", "hub", c.conn.Hub().Name(), "conn_id", c.conn.ID(), "event", c.event, "url", upstream.HandlerURL(err), "err", err)
		}
		c.ep.inv.metrics.total.WithLabelValues(c.dialect, outcome).Inc()
		c.ep.reply(c.conn, encodeInvokeError(c.id, name, msg))
		return
	}
	if resp.State != nil {
		c.conn.SetState(*resp.State)
	}
	c.ep.inv.metrics.total.WithLabelValues(c.dialect, outcomeSuccess).Inc()
	c.ep.reply(c.conn, encodeInvokeResult(c.id, resp))
}

// invokeFailure names a failed invocation for the client, with its outcome.
// A handler's own 4xx/5xx answer passes its text on (that is what the
// handler's fail(code, detail) is for); nothing else of err is shown.
func invokeFailure(err error, timedOut, closed bool, timeout time.Duration) (name, msg, outcome string) {
	var rej *upstream.RejectError
	switch {
	case timedOut:
		return invokeTimeout, fmt.Sprintf("the event handler did not answer within %v (invoke.timeout)", timeout), outcomeTimeout
	case closed, errors.Is(err, upstream.ErrClosed):
		return invokeCancelled, "the server is shutting down", outcomeClosed
	case errors.Is(err, upstream.ErrNoHandler):
		return invokeNoHandler, "no event handler is configured for the event", outcomeNoHandler
	case errors.As(err, &rej):
		msg = fmt.Sprintf("the event handler answered %d", rej.Status)
		if rej.Reason != "" {
			msg += ": " + rej.Reason
		}
		return invokeHandlerError, msg, outcomeHandlerError
	}
	f := handlerFailure(err)
	if f.metric == "upstream_timeout" {
		return invokeTimeout, "the event handler " + f.what, outcomeTimeout
	}
	return invokeHandlerError, "the event handler " + f.what, outcomeHandlerError
}

// encodeInvokeResult is the body of a successful invokeResponse: the
// handler's answer with its data type by Content-Type, as for events; no
// dataType and data when the handler answered without a body.
func encodeInvokeResult(id string, resp *upstream.EventResponse) []byte {
	b := make([]byte, 0, 96+len(id)+len(resp.Body)*4/3)
	b = append(b, `"type":"invokeResponse","invocationId":`...)
	b = jsonstring.Append(b, id)
	b = append(b, `,"success":true`...)
	if len(resp.Body) > 0 {
		typ := core.Binary
		switch resp.DataType() {
		case "text":
			typ = core.Text
		case "json":
			typ = core.JSON
			if !json.Valid(resp.Body) {
				typ = core.Text // a handler that says JSON but sends something else
			}
		}
		b = append(b, ',')
		b = appendData(b, typ, resp.Body)
	}
	return append(b, '}')
}

// encodeInvokeError is the body of a failed invokeResponse. Like every
// invokeResponse body it lacks the opening brace: the codec adds it, after
// the sequenceId on the reliable protocol (core.Framed).
func encodeInvokeError(id, name, msg string) []byte {
	b := append([]byte(nil), `"type":"invokeResponse","invocationId":`...)
	b = jsonstring.Append(b, id)
	b = append(b, `,"success":false,"error":{"name":`...)
	b = jsonstring.Append(b, name)
	b = append(b, `,"message":`...)
	b = jsonstring.Append(b, msg)
	return append(b, "}}"...)
}
