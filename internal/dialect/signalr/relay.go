package signalr

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/relay"
	"github.com/switchboardhq/switchboard/internal/transport/sse"
)

// A connection negotiated on one node of a cluster may open its WebSocket
// or Server-Sent Events stream (or come back, stateful) on another, poll
// and post its messages to any: the load balancer need not remember it. Its
// connection token names the node that holds the session (the owner), as
// its connection id does; the node that gets the request checks the
// client's access token, asks the owner (the owner makes the checks it
// makes for its own requests, and answers with the status and body it
// would give) and relays the stream to it, or has the owner run the POST.
// Long polling: see relaypoll.go.

// UseRelays makes the endpoint relay the WebSockets of connections held by
// other nodes to them (a cluster); the server calls it before it serves,
// once the relays (which call AcceptRelay) exist.
func (e *Endpoint) UseRelays(d relay.Dialer) { e.relays = d }

// reasonRelayUnavailable answers a WebSocket whose connection's node could
// not be asked.
const reasonRelayUnavailable = "the node holding this connection could not be reached; negotiate again"

// relayAuth answers for the owner what this node can check itself: the
// hub (which must be named: it is the access token's audience) and the
// access token. It returns the hub and the token's user.
func (e *Endpoint) relayAuth(w http.ResponseWriter, r *http.Request, kind string) (string, string, bool) {
	if _, n := queryValue(r, "hub"); n != 1 { // the owner would not find it either: the hub must match its session's
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
		return "", "", false
	}
	hub, ok := e.hubOf(w, r, kind)
	if !ok {
		return "", "", false
	}
	claims, err := e.authenticate(r, hub)
	if err != nil {
		e.failAuth(w, kind, err)
		return "", "", false
	}
	return hub, claims.UserID, true
}

// relayFailed answers a request the owner refused (as it answered) or that
// could not reach it.
func (e *Endpoint) relayFailed(w http.ResponseWriter, kind, node string, err error) {
	var ref *relay.Refusal
	switch {
	case errors.As(err, &ref) && ref.Code >= 1000:
		// A close code: a node's own refusal (its relay limit), not an
		// answer of the owner's endpoint.
		e.fail(w, kind, http.StatusServiceUnavailable, "relay_refused", ref.Reason)
	case errors.As(err, &ref):
		e.answer(w, kind, relay.Answer{Status: ref.Code, Body: ref.Reason})
	case errors.Is(err, relay.ErrOwnerGone):
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
	default:
		e.log.Warn("relaying a request to the node holding its connection failed", "kind", kind, "node", node, "err", err)
		e.fail(w, kind, http.StatusServiceUnavailable, "relay_unavailable", reasonRelayUnavailable)
	}
}

// answer writes the owner's answer as the owner wrote it.
func (e *Endpoint) answer(w http.ResponseWriter, kind string, a relay.Answer) {
	switch {
	case a.Status == http.StatusOK:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		e.metrics.requests.WithLabelValues(kind, "200").Inc()
	case a.Status == http.StatusUnauthorized:
		e.failAuth(w, kind, errors.New(strings.TrimPrefix(strings.TrimSpace(a.Body), "Unauthorized: ")))
	case a.Status >= 400 && a.Status < 600:
		if a.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", "GET")
		}
		e.fail(w, kind, a.Status, "relay_refused", strings.TrimSpace(a.Body))
	default:
		e.fail(w, kind, http.StatusBadGateway, "relay_refused", "the node holding this connection gave an unexpected answer")
	}
}

// serveRelayed serves a request for a connection negotiated on node: a
// WebSocket, an SSE stream (each counted against the client IP's limits
// here, where it is held) or a POST.
func (e *Endpoint) serveRelayed(w http.ResponseWriter, r *http.Request, kind, node, token string) {
	switch kind {
	case "send":
		e.relaySend(w, r, node, token)
		return
	case "delete":
		e.relayStop(w, r, node, token)
		return
	case "poll": // a poll holds no client IP slot (the first one on the owner does not either)
		e.relayPoll(w, r, node, token)
		return
	}
	slot, ok := e.admitClientIP(w, r, kind, false)
	if !ok {
		return
	}
	defer slot.Release() // a no-op once the socket holds it
	if kind == "sse" {
		e.relaySSE(w, r, node, token)
		return
	}
	e.relayWebSocket(w, r, node, token, slot)
}

// relayWebSocket serves the WebSocket of a connection that node holds: it
// answers before the upgrade what the owner answers, then relays the
// socket, which holds slot.
func (e *Endpoint) relayWebSocket(w http.ResponseWriter, r *http.Request, node, token string, slot *ratelimit.Slot) {
	const kind = "websockets"
	hub, user, ok := e.relayAuth(w, r, kind)
	if !ok {
		return
	}
	rc, err := e.relays.Dial(e.ctx, node, relay.Request{Kind: relay.KindSignalRWebSocket, Hub: hub, ConnID: token, UserID: user})
	if err != nil {
		e.relayFailed(w, kind, node, err)
		return
	}
	sock, err := e.ws.Upgrade(w, r, "")
	if err != nil {
		e.metrics.rejected.WithLabelValues("upgrade").Inc()
		rc.Abort("the WebSocket upgrade failed")
		return
	}
	e.metrics.requests.WithLabelValues(kind, "101").Inc()
	sock.Serve(relayed{Handler: rc.Attach(sock), slot: slot.Move()})
}

// relaySSE serves the Server-Sent Events stream of a connection that node
// holds, until it ends.
func (e *Endpoint) relaySSE(w http.ResponseWriter, r *http.Request, node, token string) {
	const kind = "sse"
	hub, user, ok := e.relayAuth(w, r, kind)
	if !ok {
		return
	}
	rc, err := e.relays.Dial(e.ctx, node, relay.Request{Kind: relay.KindSignalRSSE, Hub: hub, ConnID: token, UserID: user})
	if err != nil {
		e.relayFailed(w, kind, node, err)
		return
	}
	holdOpen(w)
	st, err := sse.Open(w, r, e.sseOptions())
	if err != nil {
		rc.Abort("the server-sent events stream could not open")
		e.fail(w, kind, http.StatusInternalServerError, "sse_start", err.Error())
		return
	}
	ss := &sseSocket{Stream: st}
	h := rc.Attach(ss)
	if err := st.Start(); err != nil {
		e.metrics.rejected.WithLabelValues("sse_start").Inc()
		h.HandleClose("server-sent events stream could not start: " + err.Error())
		return
	}
	e.metrics.requests.WithLabelValues(kind, "200").Inc()
	reason := st.Serve(r.Context())
	ss.left.Store(reason == sse.ReasonClientGone || reason == sse.ReasonContextDone) // see serveSSE
	h.HandleClose("server-sent events stream ended: " + reason)
}

// sseSocket is a relayed SSE stream as a relay.Socket: a client that went
// away left (EventSource has no goodbye).
type sseSocket struct {
	*sse.Stream
	left atomic.Bool
}

func (s *sseSocket) ClosedByClient() bool { return s.left.Load() }

// relaySend has node run the POST of a connection it holds.
func (e *Endpoint) relaySend(w http.ResponseWriter, r *http.Request, node, token string) {
	const kind = "send"
	hub, user, ok := e.relayAuth(w, r, kind)
	if !ok {
		return
	}
	body, ok := e.readSend(w, r)
	if !ok {
		return
	}
	a, err := e.relays.Call(e.ctx, node, relay.Request{Kind: relay.KindSignalRSend, Hub: hub, ConnID: token, UserID: user}, body)
	if err != nil {
		e.relayFailed(w, kind, node, err)
		return
	}
	e.answer(w, kind, a)
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

// relaySession finds the session a relayed request names and checks it as
// serveConnection checks a request on this node; it answers into w when
// it refuses.
func (e *Endpoint) relaySession(w http.ResponseWriter, kind string, req relay.Request, transport int) *session {
	s := e.lookup(req.ConnID)
	switch {
	case s == nil || !strings.EqualFold(req.Hub, s.hub):
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
	case req.UserID != s.claims.UserID:
		e.failAuth(w, kind, errors.New("the token names another user than the connection's"))
	case transport != 0 && s.claims.Transports != 0 && s.claims.Transports&transport == 0:
		e.fail(w, kind, http.StatusNotFound, "transport_not_allowed", "The requested transport is not supported by this end point type.")
	default:
		return s
	}
	return nil
}

// AcceptRelay attaches the WebSocket or SSE stream of a connection of this
// node whose client reached another node (relay.Acceptor): the checks of
// such a request on this node, answered with the same status and body.
func (e *Endpoint) AcceptRelay(req relay.Request, sock relay.Socket) (relay.Handler, error) {
	rw := &refusalWriter{h: http.Header{}}
	switch req.Kind {
	case relay.KindSignalRWebSocket:
		const kind = "websockets"
		ws, ok := sock.(wsSocket)
		if !ok {
			break
		}
		if s := e.relaySession(rw, kind, req, transportWebSockets); s != nil && e.claimTransport(rw, s, webSockets, kind) {
			return e.attachWebSocket(s, ws, nil), nil
		}
		return nil, rw.refusal()
	case relay.KindSignalRSSE:
		const kind = "sse"
		if s := e.relaySession(rw, kind, req, transportSSE); s != nil && e.claimTransport(rw, s, serverSentEvents, kind) {
			// As serveSSE: the stream is the session's link before the
			// client sees it open.
			s.open(sock, func(l core.Link, src core.Source) { l.(relay.Socket).Bind(src) })
			return &sseRelayed{s: s, sock: sock}, nil
		}
		return nil, rw.refusal()
	case relay.KindSignalRPoll:
		const kind = "poll"
		if s := e.relaySession(rw, kind, req, transportLongPoll); s != nil && e.claimTransport(rw, s, longPolling, kind) {
			if h := e.acceptPoll(s, sock); h != nil {
				return h, nil
			}
			e.fail(rw, kind, http.StatusServiceUnavailable, "shutting_down", "the node holding this connection is shutting down")
		}
		return nil, rw.refusal()
	}
	e.fail(rw, "relay", http.StatusBadRequest, "relay_kind", "this node cannot serve that relayed request")
	return nil, rw.refusal()
}

// sseRelayed is the owner's handler of a relayed SSE stream: no client
// messages come on it (they are POSTs), only its end.
type sseRelayed struct {
	s    *session
	sock relay.Socket
}

func (h *sseRelayed) HandleMessage([]byte, bool) error { return nil }

func (h *sseRelayed) HandleClose(reason string) { h.s.gone(h.sock, reason, h.sock.ClosedByClient()) }

// AnswerRelay runs the POST of a connection of this node whose client
// reached another node (relay.Answerer), as send does.
func (e *Endpoint) AnswerRelay(req relay.Request, body []byte) relay.Answer {
	rw := &refusalWriter{h: http.Header{}}
	switch req.Kind {
	case relay.KindSignalRSend:
		if s := e.relaySession(rw, "send", req, 0); s != nil {
			if l, ok := e.sendLink(rw, s); ok {
				e.input(rw, s, l, body)
			}
		}
	case relay.KindSignalRStop:
		if s := e.relaySession(rw, "delete", req, 0); s != nil {
			e.stop(rw, s)
		}
	default:
		e.fail(rw, "relay", http.StatusBadRequest, "relay_kind", "this node cannot serve that relayed request")
	}
	r := rw.refusal()
	return relay.Answer{Status: r.Code, Body: r.Reason}
}

// refusalWriter takes the answer the endpoint would give a request on
// this node, for the node that has the client.
type refusalWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *refusalWriter) Header() http.Header { return w.h }

func (w *refusalWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *refusalWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > 4096 { // a reason, not a page
		p = p[:max(0, 4096-w.body.Len())]
	}
	return w.body.Write(p)
}

func (w *refusalWriter) refusal() *relay.Refusal {
	code := w.code
	if code == 0 {
		code = http.StatusInternalServerError
	}
	return &relay.Refusal{Code: code, Reason: w.body.String()}
}
