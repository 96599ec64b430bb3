package signalr

import (
	"bytes"
	"errors"
	"net/http"
	"strings"

	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/relay"
)

// A connection negotiated on one node of a cluster may open its WebSocket
// (or come back, stateful) on another: the load balancer need not remember
// it. Its connection token names the node that holds the session (the
// owner), as its connection id does; the node that gets the WebSocket
// checks the client's access token, asks the owner to attach the client
// (the owner makes the checks it makes for its own requests, and answers
// with the status and body it would give) and relays the socket to it.
// SSE and long polling are not relayed: their requests must reach the node
// of the negotiate.

// UseRelays makes the endpoint relay the WebSockets of connections held by
// other nodes to them (a cluster); the server calls it before it serves,
// once the relays (which call AcceptRelay) exist.
func (e *Endpoint) UseRelays(d relay.Dialer) { e.relays = d }

// reasonRelayUnavailable answers a WebSocket whose connection's node could
// not be asked.
const reasonRelayUnavailable = "the node holding this connection could not be reached; negotiate again"

// relayWebSocket serves the WebSocket of a connection that node holds: it
// answers before the upgrade what the owner answers, then relays the
// socket, which holds slot.
func (e *Endpoint) relayWebSocket(w http.ResponseWriter, r *http.Request, node, token string, slot *ratelimit.Slot) {
	const kind = "websockets"
	if _, n := queryValue(r, "hub"); n != 1 { // the owner would not find it either: the hub must match its session's
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
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
	rc, err := e.relays.Dial(e.ctx, node, relay.Request{Kind: relay.KindSignalRWebSocket, Hub: hub, ConnID: token, UserID: claims.UserID})
	if err != nil {
		var ref *relay.Refusal
		switch {
		case errors.As(err, &ref) && ref.Code == http.StatusUnauthorized:
			e.failAuth(w, kind, errors.New(strings.TrimPrefix(strings.TrimSpace(ref.Reason), "Unauthorized: ")))
		case errors.As(err, &ref) && ref.Code >= 400 && ref.Code < 600:
			e.fail(w, kind, ref.Code, "relay_refused", strings.TrimSpace(ref.Reason))
		case errors.Is(err, relay.ErrOwnerGone):
			e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
		default:
			e.log.Warn("relaying a WebSocket to the node holding its connection failed", "node", node, "err", err)
			e.fail(w, kind, http.StatusServiceUnavailable, "relay_unavailable", reasonRelayUnavailable)
		}
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

// AcceptRelay attaches the WebSocket of a connection of this node whose
// client reached another node (relay.Acceptor): the checks of a WebSocket
// request on this node, answered with the same status and body.
func (e *Endpoint) AcceptRelay(req relay.Request, sock relay.Socket) (relay.Handler, error) {
	const kind = "websockets"
	rw := &refusalWriter{h: http.Header{}}
	ws, ok := sock.(wsSocket)
	if req.Kind != relay.KindSignalRWebSocket || !ok {
		e.fail(rw, kind, http.StatusBadRequest, "relay_kind", "this node cannot serve that relayed request")
		return nil, rw.refusal()
	}
	s := e.lookup(req.ConnID)
	switch {
	case s == nil || !strings.EqualFold(req.Hub, s.hub):
		e.fail(rw, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
	case req.UserID != s.claims.UserID:
		e.failAuth(rw, kind, errors.New("the token names another user than the connection's"))
	case s.claims.Transports != 0 && s.claims.Transports&transportWebSockets == 0:
		e.fail(rw, kind, http.StatusNotFound, "transport_not_allowed", "The requested transport is not supported by this end point type.")
	case e.claimTransport(rw, s, webSockets, kind):
		return e.attachWebSocket(s, ws, nil), nil
	}
	return nil, rw.refusal()
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
