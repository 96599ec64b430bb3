package signalr

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/longpoll"
	"github.com/switchboardhq/switchboard/internal/transport/sse"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
)

// serveConnection dispatches /client/ requests (spec §5): GET opens or
// polls a transport, POST carries client messages for SSE and long polling,
// DELETE stops a long-polling connection.
func (e *Endpoint) serveConnection(w http.ResponseWriter, r *http.Request) {
	kind := requestKind(r)
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		e.fail(w, kind, http.StatusMethodNotAllowed, "method", "method not allowed")
		return
	}
	token := r.URL.Query().Get("id")
	if token == "" {
		if kind == "websockets" {
			e.skipNegotiation(w, r)
			return
		}
		e.fail(w, kind, http.StatusBadRequest, "no_id", "Connection ID required")
		return
	}
	s := e.lookup(token)
	if s == nil && e.relays != nil {
		if node, ok := e.relays.Remote(token); ok { // negotiated on another node
			e.serveRelayed(w, r, kind, node, token)
			return
		}
	}
	if s == nil {
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
		return
	}
	if h, n := queryValue(r, "hub"); n > 0 && !strings.EqualFold(h, s.hub) {
		e.fail(w, kind, http.StatusNotFound, "unknown_id", "No Connection with that ID")
		return
	}
	var slot *ratelimit.Slot // a GET that opens a transport counts against its client IP's limits
	if r.Method == http.MethodGet && !(kind == "poll" && s.polling()) {
		negotiated := s.rateSpent.Swap(false) // the negotiate paid for its first transport
		var ok bool
		if slot, ok = e.admitClientIP(w, r, kind, negotiated); !ok {
			if negotiated {
				s.rateSpent.Store(true) // not used: the client's next try may
			}
			return
		}
	}
	defer slot.Release() // a no-op once the transport holds it
	claims, err := e.authenticate(r, s.hub)
	if err == nil && claims.UserID != s.claims.UserID {
		err = errors.New("the token names another user than the connection's")
	}
	if err != nil {
		e.failAuth(w, kind, err)
		return
	}
	switch r.Method {
	case http.MethodPost:
		e.send(w, r, s)
	case http.MethodDelete:
		e.stop(w, s)
	default:
		bit := map[string]int{"websockets": transportWebSockets, "sse": transportSSE, "poll": transportLongPoll}[kind]
		if t := s.claims.Transports; t != 0 && t&bit == 0 {
			e.fail(w, kind, http.StatusNotFound, "transport_not_allowed", "The requested transport is not supported by this end point type.")
			return
		}
		switch kind {
		case "websockets":
			e.serveWebSocket(w, r, s, slot)
		case "sse":
			e.serveSSE(w, r, s)
		default:
			e.servePoll(w, r, s, slot)
		}
	}
}

func requestKind(r *http.Request) string {
	switch {
	case r.Method == http.MethodPost:
		return "send"
	case r.Method == http.MethodDelete:
		return "delete"
	case websocket.IsUpgrade(r):
		return "websockets"
	case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		return "sse"
	}
	return "poll"
}

// claimTransport makes kind the session's transport, or answers why it
// cannot be: 400 for a change of transport, 409 for a second concurrent
// stream (a stateful WebSocket may come back while its old socket lingers).
func (e *Endpoint) claimTransport(w http.ResponseWriter, s *session, kind transportKind, label string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.failed:
		e.fail(w, label, http.StatusNotFound, "unknown_id", "No Connection with that ID")
	case s.transport == noTransport:
		s.transport = kind
		return true
	case s.transport != kind:
		e.fail(w, label, http.StatusBadRequest, "transport_change", "Cannot change transports mid-connection")
	case kind == longPolling:
		return true
	case kind == webSockets && s.conn != nil && s.conn.Codec().Sequenced():
		return true // stateful reconnect
	default:
		e.fail(w, label, http.StatusConflict, "duplicate_transport", "Another persistent connection is already open for this connection ID")
	}
	return false
}

// skipNegotiation serves a WebSocket that comes without negotiate (the
// client's skipNegotiation option): the session is made on the spot.
func (e *Endpoint) skipNegotiation(w http.ResponseWriter, r *http.Request) {
	const kind = "websockets"
	slot, ok := e.admitClientIP(w, r, kind, false)
	if !ok {
		return
	}
	defer slot.Release() // a no-op once the socket holds it
	hub, ok := e.hubOf(w, r, kind)
	if !ok {
		return
	}
	claims, err := e.authenticate(r, hub)
	if err != nil {
		e.failAuth(w, kind, err)
		return
	}
	if claims.Transports != 0 && claims.Transports&transportWebSockets == 0 {
		e.fail(w, kind, http.StatusNotFound, "transport_not_allowed", "The requested transport is not supported by this end point type.")
		return
	}
	s := e.newSession(hub, claims, r)
	e.register(s) // serveWebSocket claims the transport
	e.serveWebSocket(w, r, s, slot)
}

// wsSocket is a session's WebSocket: a *websocket.Socket, or the owner's
// end of a relay from the node that has the client's socket (cluster).
type wsSocket interface {
	core.Link
	Bind(src core.Source)
	ClosedByClient() bool
	SetKeepAlive(frame []byte, binary bool)
}

// serveWebSocket serves a session's WebSocket; the socket's handler takes
// over slot (its place in the client IP's count).
func (e *Endpoint) serveWebSocket(w http.ResponseWriter, r *http.Request, s *session, slot *ratelimit.Slot) {
	const kind = "websockets"
	if !e.claimTransport(w, s, webSockets, kind) {
		return
	}
	sock, err := e.ws.Upgrade(w, r, "")
	if err != nil {
		e.metrics.rejected.WithLabelValues("upgrade").Inc()
		s.mu.Lock()
		fresh := s.conn == nil
		s.mu.Unlock()
		if fresh { // it claimed the transport: the sweeper would never drop it
			e.forget(s)
		}
		return
	}
	e.metrics.requests.WithLabelValues(kind, "101").Inc()
	sock.Serve(e.attachWebSocket(s, sock, slot.Move()))
}

// attachWebSocket makes sock, whose transport s claimed, the session's
// transport (a stateful session's conn resumes on it) and returns the
// socket's handler, which holds slot.
func (e *Endpoint) attachWebSocket(s *session, sock wsSocket, slot *ratelimit.Slot) websocket.Handler {
	bind := func(l core.Link, src core.Source) {
		sk := l.(wsSocket)
		if c, ok := src.(*core.Conn); ok {
			p := codecProtocol(c)
			sk.SetKeepAlive(p.AppendPing(nil), p.Binary())
		}
		sk.Bind(src)
	}
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil { // a stateful client back after a drop
		if _, err := conn.Hub().Resume(conn.ID(), conn.Protocol(), sock); err != nil {
			e.metrics.rejected.WithLabelValues("not_recoverable").Inc()
			slot.Release()
			sock.Close(1000, "the connection cannot be resumed")
			return wsDiscard{}
		}
		s.open(sock, bind)
		bind(sock, conn)
		return &wsHandler{s: s, sock: sock, slot: slot}
	}
	s.open(sock, bind)
	return &wsHandler{s: s, sock: sock, slot: slot}
}

func codecProtocol(c *core.Conn) hubproto.Protocol { return c.Codec().(*codec).proto }

// wsHandler reads one socket of a session.
type wsHandler struct {
	s    *session
	sock wsSocket
	slot *ratelimit.Slot // the socket's place in its client IP's count
}

func (h *wsHandler) HandleMessage(data []byte, _ bool) error {
	err := h.s.input(h.sock, data)
	var pe *protocolError
	if errors.As(err, &pe) {
		h.s.closeForError(h.sock, pe)
		return nil
	}
	return err
}

func (h *wsHandler) HandleClose(reason string) {
	h.slot.Release()
	h.s.gone(h.sock, reason, h.sock.ClosedByClient())
}

// wsDiscard reads a socket that is being closed.
type wsDiscard struct{}

func (wsDiscard) HandleMessage([]byte, bool) error { return nil }
func (wsDiscard) HandleClose(string)               {}

// closeForError ends the session of a client that broke the protocol: the
// conn gets a Close message with the error; without a conn the transport
// just closes.
func (s *session) closeForError(l core.Link, pe *protocolError) {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Close(pe.msg)
		return
	}
	s.ep.forget(s)
	l.Close(1000, pe.msg)
}

func (e *Endpoint) serveSSE(w http.ResponseWriter, r *http.Request, s *session) {
	const kind = "sse"
	if !e.claimTransport(w, s, serverSentEvents, kind) {
		return
	}
	holdOpen(w)
	st, err := sse.Open(w, r, e.sseOptions())
	if err != nil {
		e.fail(w, kind, http.StatusInternalServerError, "sse_start", err.Error())
		e.forget(s)
		return
	}
	// The stream is the session's link before the client sees it open: the
	// client posts its handshake as soon as the preamble arrives.
	s.open(st, func(l core.Link, src core.Source) { l.(*sse.Stream).Bind(src) })
	if err := st.Start(); err != nil {
		e.metrics.rejected.WithLabelValues("sse_start").Inc()
		s.gone(st, "server-sent events stream could not start: "+err.Error(), false)
		return
	}
	e.metrics.requests.WithLabelValues(kind, "200").Inc()
	// A client that goes away is a normal end: EventSource offers no
	// goodbye, and the JS client closes it without waiting for its Close
	// message to be posted.
	// Serve's ctx is the request's own, so ReasonContextDone means the
	// client left as well.
	reason := st.Serve(r.Context())
	left := reason == sse.ReasonClientGone || reason == sse.ReasonContextDone
	s.gone(st, "server-sent events stream ended: "+reason, left)
}

func (e *Endpoint) sseOptions() sse.Options {
	return sse.Options{
		KeepAlive:      e.cfg.KeepAlive,
		KeepAliveFrame: hubproto.JSON.AppendPing(nil), // SSE carries text only
		Registerer:     e.cfg.Registerer,
		Logger:         e.log,
	}
}

// servePoll serves one poll; the first one's slot (its place in the client
// IP's count) is held by the long-polling conn until it ends.
func (e *Endpoint) servePoll(w http.ResponseWriter, r *http.Request, s *session, slot *ratelimit.Slot) {
	const kind = "poll"
	if !e.claimTransport(w, s, longPolling, kind) {
		return
	}
	holdOpen(w)
	s.mu.Lock()
	lp := s.lp
	if lp == nil {
		held := slot.Move()
		lp = longpoll.New(longpoll.Options{
			PollTimeout: e.cfg.LongPollTimeout,
			MaxGap:      e.cfg.LongPollGap,
			Registerer:  e.cfg.Registerer,
			Logger:      e.log,
			OnGone: func(reason string) {
				held.Release()
				s.mu.Lock()
				clean := s.cleanEnd
				s.mu.Unlock()
				s.gone(s.lp, "long polling ended: "+reason, clean)
			},
		})
		s.lp = lp
	}
	s.mu.Unlock()
	s.open(lp, func(l core.Link, src core.Source) { l.(*longpoll.Conn).Bind(src) })
	e.metrics.requests.WithLabelValues(kind, "200").Inc()
	lp.Poll(w, r)
}

// holdOpen lifts the listener's read timeout (which bounds reading a request) from a
// request held open: an SSE stream lives until either side ends it, a long poll until
// signalr.long_poll_timeout. Without it, net/http's background read of the connection
// would time out and cancel the request.
func holdOpen(w http.ResponseWriter) {
	http.NewResponseController(w).SetReadDeadline(time.Time{}) // not supported: no deadline to lift
}

// send takes a POST of client messages for an SSE or long-polling session.
func (e *Endpoint) send(w http.ResponseWriter, r *http.Request, s *session) {
	l, ok := e.sendLink(w, s)
	if !ok {
		return
	}
	body, ok := e.readSend(w, r)
	if !ok {
		return
	}
	e.input(w, s, l, body)
}

// sendLink returns the transport a POST's messages come in on, or answers
// why there is none.
func (e *Endpoint) sendLink(w http.ResponseWriter, s *session) (core.Link, bool) {
	const kind = "send"
	s.mu.Lock()
	tr, l := s.transport, s.link
	s.mu.Unlock()
	switch {
	case tr == webSockets:
		w.Header().Set("Allow", "GET")
		e.fail(w, kind, http.StatusMethodNotAllowed, "send_on_websocket", "POST requests are not allowed for WebSocket connections.")
		return nil, false
	case l == nil:
		e.fail(w, kind, http.StatusNotFound, "no_transport", "No Connection with that ID: open a transport first")
		return nil, false
	}
	return l, true
}

// readSend reads a POST's body, at most signalr's MaxMessageBytes.
func (e *Endpoint) readSend(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	const kind = "send"
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(e.cfg.MaxMessageBytes)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			e.fail(w, kind, http.StatusRequestEntityTooLarge, "too_large", "message larger than "+strconv.Itoa(e.cfg.MaxMessageBytes)+" bytes")
			return nil, false
		}
		e.fail(w, kind, http.StatusBadRequest, "body_read", "Reading the request body failed")
		return nil, false
	}
	return body, true
}

// input takes a POST's messages on transport l and answers 200.
func (e *Endpoint) input(w http.ResponseWriter, s *session, l core.Link, body []byte) {
	const kind = "send"
	var pe *protocolError
	if err := s.input(l, body); errors.As(err, &pe) {
		s.closeForError(l, pe)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	e.metrics.requests.WithLabelValues(kind, "200").Inc()
}

// stop takes the DELETE of a long-polling client that stops.
func (e *Endpoint) stop(w http.ResponseWriter, s *session) {
	const kind = "delete"
	s.mu.Lock()
	lp := s.lp
	if lp != nil {
		s.cleanEnd = true
	}
	s.mu.Unlock()
	if lp == nil {
		e.fail(w, kind, http.StatusBadRequest, "delete_not_polling", "Cannot terminate this connection using the DELETE endpoint.")
		return
	}
	lp.Stop()
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusAccepted)
	e.metrics.requests.WithLabelValues(kind, "202").Inc()
}
