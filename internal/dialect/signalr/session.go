package signalr

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/longpoll"
	"github.com/switchboardhq/switchboard/internal/upstream"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// transportKind is the transport a session settled on with its first request.
type transportKind uint8

const (
	noTransport transportKind = iota
	webSockets
	serverSentEvents
	longPolling
)

func (k transportKind) String() string {
	return [...]string{"none", "websockets", "sse", "poll"}[k]
}

// session is one SignalR connection from negotiate to its end. Its core conn
// exists from the handshake on; a stateful session keeps it across
// WebSocket reconnects.
type session struct {
	ep       *Endpoint
	hub      string // the hub's key (core.HubKey); the hub is acquired by the handshake
	claims   *auth.SignalRClaims
	id       string // public connection id (core conn id)
	token    string // secret connection token, the id= of every request
	query    string
	created  time.Time
	stateful bool // negotiated useStatefulReconnect

	mu        sync.Mutex
	transport transportKind
	link      core.Link                    // the open transport, nil between transports
	bind      func(core.Link, core.Source) // binds link to a source (set with link)
	lp        *longpoll.Conn
	conn      *core.Conn // nil until the handshake
	proto     hubproto.Protocol
	hsTimer   *time.Timer
	cleanEnd  bool // the client said goodbye (Close message, DELETE, close frame)
	failed    bool // the handshake failed: the transport only delivers its answer

	// in serializes client input (WebSocket frames, POST bodies) and guards
	// the fields below.
	in       sync.Mutex
	buf      []byte    // an incomplete record
	bufFrom  core.Link // the transport buf came from
	received uint64    // trackable client messages processed (stateful)
	incoming uint64    // id of the last trackable message read (stateful)
	acked    uint64    // the last Ack sent

	budget *ratelimit.Budget // inbound message rate, spent under in; nil: unlimited
	// rateSpent: the negotiate that made the session spent the handshake
	// token of the attempt; its first transport does not spend another.
	rateSpent atomic.Bool
}

// unusedSince reports whether a negotiated session never opened a
// transport within timeout.
func (s *session) unusedSince(now time.Time, timeout time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transport == noTransport && now.Sub(s.created) > timeout
}

func (s *session) upConn() upstream.SignalRConn {
	return upstream.SignalRConn{Hub: s.hub, ID: s.id, UserID: s.claims.UserID, Claims: s.claims.Claims, Query: s.query}
}

// open makes l the session's transport and starts the handshake clock when
// there is no conn yet. bind attaches l to a source.
func (s *session) open(l core.Link, bind func(core.Link, core.Source)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.link, s.bind = l, bind
	if s.conn == nil && s.hsTimer == nil {
		s.hsTimer = time.AfterFunc(s.ep.cfg.HandshakeTimeout, s.handshakeExpired)
	}
}

func (s *session) handshakeExpired() {
	s.mu.Lock()
	l, done := s.link, s.conn != nil || s.failed
	s.mu.Unlock()
	if done || l == nil {
		return
	}
	s.ep.metrics.rejected.WithLabelValues("handshake_timeout").Inc()
	s.ep.forget(s)
	l.Close(1000, "handshake was not received in time")
}

// gone tells the session that its transport l ended. A client that said
// goodbye ends the conn; a dropped stateful WebSocket waits for the client
// to come back; anything else ends the conn with reason.
func (s *session) gone(l core.Link, reason string, clean bool) {
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		return
	}
	s.link, s.bind = nil, nil
	if clean {
		s.cleanEnd = true
	}
	conn := s.conn
	if s.hsTimer != nil {
		s.hsTimer.Stop()
	}
	s.mu.Unlock()
	if conn == nil {
		s.ep.forget(s)
		return
	}
	if clean {
		conn.End(l, reason)
	} else {
		conn.Detach(l, reason)
	}
	if conn.Ended() {
		s.ep.forget(s) // ConnEnded may have left it for a final poll
	}
}

// polling reports whether the session's long-polling conn exists: a GET
// is then one more poll, not a new transport.
func (s *session) polling() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lp != nil
}

// awaitsFinalPoll reports whether the session is a long-polling one whose
// client has yet to poll for what the server queued last (a Close) and the
// 204 that ends it.
func (s *session) awaitsFinalPoll() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transport == longPolling && s.link != nil
}

// input handles bytes a client sent (one WebSocket message or POST body)
// on transport l. It returns a protocol error after which the connection is
// closed.
func (s *session) input(l core.Link, data []byte) error {
	s.in.Lock()
	defer s.in.Unlock()
	s.mu.Lock()
	conn, proto, failed := s.conn, s.proto, s.failed
	s.mu.Unlock()
	if failed {
		return nil
	}
	if s.bufFrom != l {
		s.buf = nil // a dropped socket's partial record: the client sends it again
	}
	s.bufFrom = l
	if len(s.buf)+len(data) > s.ep.cfg.MaxMessageBytes {
		s.buf = nil
		return s.protocolError("too_large", fmt.Sprintf("message larger than %d bytes", s.ep.cfg.MaxMessageBytes))
	}
	buf := data
	if len(s.buf) > 0 {
		buf = append(s.buf, data...)
		s.buf = nil
	}
	if conn == nil {
		req, rest, err := hubproto.ParseHandshake(buf)
		if errors.Is(err, hubproto.ErrIncomplete) {
			s.buf = append([]byte(nil), buf...)
			return nil
		}
		if err != nil {
			s.failHandshake(l, "bad_handshake", "Handshake request is invalid: "+excerpt.Error(err))
			return nil
		}
		if conn, proto = s.handshake(l, req); conn == nil {
			return nil
		}
		buf = rest
	}
	for len(buf) > 0 {
		msg, rest, err := proto.Next(buf, s.ep.cfg.MaxMessageBytes)
		if errors.Is(err, hubproto.ErrIncomplete) {
			s.buf = append([]byte(nil), buf...)
			break
		}
		if err != nil {
			return s.protocolError("malformed", excerpt.Error(err))
		}
		buf = rest
		m, err := proto.Decode(msg)
		if err != nil {
			return s.protocolError("malformed", excerpt.Error(err))
		}
		if err := s.handle(conn, proto, &m); err != nil {
			return err
		}
	}
	if conn.Codec().Sequenced() && s.received > s.acked {
		s.acked = s.received
		conn.Send(core.Frame{Data: proto.AppendAck(nil, s.received), Binary: proto.Binary()})
	}
	return nil
}

// protocolError is the error of a client that broke the protocol; the
// transport closes the connection with it.
type protocolError struct{ reason, msg string }

func (e *protocolError) Error() string { return e.msg }

func (s *session) protocolError(reason, msg string) error {
	s.ep.metrics.rejected.WithLabelValues(reason).Inc()
	return &protocolError{reason: reason, msg: "Connection closed with an error. " + msg}
}

// handshake settles the protocol and creates the core conn; it answers a
// refused handshake itself and then returns nil.
func (s *session) handshake(l core.Link, req hubproto.HandshakeRequest) (*core.Conn, hubproto.Protocol) {
	proto, ok := hubproto.Lookup(req.Protocol)
	if !ok {
		s.failHandshake(l, "bad_protocol", fmt.Sprintf("Requested protocol '%s' is not available.", excerpt.Of(req.Protocol)))
		return nil, nil
	}
	if req.Version < 1 || req.Version > 2 {
		s.failHandshake(l, "bad_protocol_version", fmt.Sprintf("The server does not support version %d of the '%s' protocol.", req.Version, proto.Name()))
		return nil, nil
	}
	s.mu.Lock()
	tr := s.transport
	s.mu.Unlock()
	if proto.Binary() && tr == serverSentEvents {
		s.failHandshake(l, "binary_on_sse", fmt.Sprintf("Cannot use the '%s' protocol on the current transport. The transport does not support 'Binary' transfer format.", proto.Name()))
		return nil, nil
	}
	stateful := s.stateful && req.Version >= 2 && tr == webSockets
	codec := newCodec(proto, stateful)
	welcome := core.Frame{Data: hubproto.AppendHandshakeResponse(nil, ""), Binary: proto.Binary()}
	if err := s.ep.admitUser(s.ep.ctx, s.hub, s.claims.UserID); err != nil {
		s.failHandshake(l, "user_connection_limit", err.Error())
		return nil, nil
	}
	// The hub is made (or found) only now, for an authenticated client
	// with a transport, and held until the conn holds it.
	hub, release, err := s.ep.node.AcquireHub(s.hub)
	if err != nil {
		s.failHandshake(l, "hub_limit", "The server holds too many hubs (limits.max_hubs); try again later.")
		return nil, nil
	}
	conn, err := hub.Connect(core.ConnInfo{
		ID: s.id, UserID: s.claims.UserID, Protocol: proto.Name(), Dialect: "signalr." + proto.Name(),
		Codec: codec, Welcome: func(*core.Conn) core.Frame { return welcome },
	}, l)
	release()
	if err != nil {
		msg := "Internal server error."
		if errors.Is(err, core.ErrNodeClosed) {
			msg = "Server is shutting down."
		}
		s.failHandshake(l, "connect_failed", msg)
		return nil, nil
	}
	s.mu.Lock()
	if s.link != l { // the transport ended meanwhile
		s.mu.Unlock()
		conn.End(l, "transport closed during the handshake")
		return nil, nil
	}
	s.conn, s.proto = conn, proto
	if s.hsTimer != nil {
		s.hsTimer.Stop()
	}
	bind := s.bind
	s.mu.Unlock()
	bind(l, conn)
	if s.ep.up != nil {
		s.ep.up.Connected(s.upConn())
	}
	if s.ep.cfg.UserLimits != nil {
		s.ep.cfg.UserLimits.Evict(s.ep.ctx, conn, "signalr", duplicateNotice)
	}
	s.ep.log.Debug("signalr client connected", "hub", s.hub, "conn_id", s.id, "user_id", s.claims.UserID,
		"protocol", proto.Name(), "transport", tr.String(), "stateful", stateful)
	return conn, proto
}

// failHandshake sends the handshake error answer and ends the transport.
func (s *session) failHandshake(l core.Link, reason, msg string) {
	s.ep.metrics.rejected.WithLabelValues(reason).Inc()
	s.mu.Lock()
	s.failed = true
	bind := s.bind
	if s.hsTimer != nil {
		s.hsTimer.Stop()
	}
	s.mu.Unlock()
	s.ep.forget(s)
	if bind != nil {
		bind(l, &frameSource{items: []core.Item{{Body: hubproto.AppendHandshakeResponse(nil, msg)}}})
	}
	l.Close(1000, msg)
}

// handle acts on one client message.
func (s *session) handle(conn *core.Conn, proto hubproto.Protocol, m *hubproto.Message) error {
	s.ep.metrics.messagesIn.WithLabelValues(proto.Name(), m.Kind.String()).Inc()
	if m.Kind.Trackable() && conn.Codec().Sequenced() {
		s.incoming++
		if s.incoming <= s.received {
			return nil // sent again after a reconnect: already processed
		}
		s.received = s.incoming
	}
	if limited(m.Kind) {
		switch s.budget.Take() {
		case ratelimit.Close:
			return s.protocolError("message_rate", "message rate limit exceeded")
		case ratelimit.Refuse:
			s.ep.metrics.rejected.WithLabelValues("message_rate").Inc()
			if m.Kind == hubproto.Invocation || m.Kind == hubproto.StreamInvocation {
				s.ep.metrics.invocations.WithLabelValues("rate_limited").Inc()
				s.complete(conn, proto, m.InvocationID, "Invocation refused: message rate limit exceeded.")
			}
			return nil // others are dropped
		}
	}
	switch m.Kind {
	case hubproto.Invocation:
		s.invoke(conn, proto, m)
	case hubproto.StreamInvocation:
		s.ep.metrics.invocations.WithLabelValues("unsupported").Inc()
		s.complete(conn, proto, m.InvocationID, "Stream invocations are not supported in serverless mode.")
	case hubproto.Completion:
		s.clientResult(conn, m)
	case hubproto.Ack:
		conn.Ack(m.SequenceID)
	case hubproto.Sequence:
		if !conn.Codec().Sequenced() {
			return nil
		}
		if m.SequenceID == 0 || m.SequenceID > s.received+1 {
			return s.protocolError("bad_sequence", fmt.Sprintf("Sequence id %d is past the last received message %d.", m.SequenceID, s.received))
		}
		s.incoming = m.SequenceID - 1
	case hubproto.Close:
		s.mu.Lock()
		s.cleanEnd = true
		s.mu.Unlock()
		l := s.currentLink()
		conn.End(l, "client closed the connection")
		if l != nil {
			l.Close(core.CloseNormal, "client closed the connection") // End leaves the transport open
		}
	}
	// Ping needs no answer (the server pings on its own); stream items and
	// cancels have no meaning without client streaming.
	return nil
}

// limited reports whether a client message of kind spends the message
// budget: what the client starts (invocations, pings, stream items and
// cancels), not its answers to the server (Completion) nor the protocol's
// own bookkeeping (Ack, Sequence, Close).
func limited(k hubproto.Kind) bool {
	switch k {
	case hubproto.Completion, hubproto.Ack, hubproto.Sequence, hubproto.Close:
		return false
	}
	return true
}

// clientResult hands a client's Completion to the REST :invoke call that
// waits for it (core.Conn.AwaitResult). One that nobody waits for (a late
// answer after a timeout, or an id the server never sent) is dropped and
// counted.
func (s *session) clientResult(conn *core.Conn, m *hubproto.Message) {
	res := core.ClientResult{HasResult: m.HasResult, Error: m.Error}
	if m.HasResult {
		res.Result = append([]byte(nil), m.Result...) // m aliases the read buffer
	}
	if conn.ResolveResult(m.InvocationID, res) {
		s.ep.metrics.invocations.WithLabelValues("client_result").Inc()
		return
	}
	s.ep.metrics.rejected.WithLabelValues("unsolicited_completion").Inc()
}

func (s *session) currentLink() core.Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link
}

// invoke forwards an invocation upstream and, when the client waits for a
// result, answers with a completion (spec §8.4).
func (s *session) invoke(conn *core.Conn, proto hubproto.Protocol, m *hubproto.Message) {
	up := s.ep.up
	if up == nil || !up.HasUpstream(s.hub, "messages", m.Target) {
		s.ep.metrics.invocations.WithLabelValues("no_upstream").Inc()
		s.complete(conn, proto, m.InvocationID, fmt.Sprintf("Invocation failed, no upstream handles '%s'.", excerpt.Of(m.Target)))
		return
	}
	status, body, err := up.Invoke(s.ep.ctx, s.upConn(), m.Target, m.Raw, proto.Binary())
	if m.InvocationID == "" {
		s.ep.metrics.invocations.WithLabelValues("forwarded").Inc()
		return
	}
	switch {
	case errors.Is(err, upstream.ErrResponseTooLarge):
		s.ep.metrics.invocations.WithLabelValues("failed").Inc()
		s.complete(conn, proto, m.InvocationID, "Invocation failed, response too large.")
	case err != nil:
		s.ep.log.Warn("signalr upstream invocation failed", "hub", s.hub, "conn_id", s.id, "target", m.Target, "url", upstream.HandlerURL(err), "err", err)
		s.ep.metrics.invocations.WithLabelValues("failed").Inc()
		s.complete(conn, proto, m.InvocationID, "Invocation failed, status code 500")
	case status >= 200 && status < 300 && len(body) == 0:
		s.ep.metrics.invocations.WithLabelValues("void").Inc()
		s.complete(conn, proto, m.InvocationID, "")
	case status == http.StatusOK:
		s.ep.metrics.invocations.WithLabelValues("completed").Inc()
		conn.Deliver(&core.Message{Type: core.Framed, Data: body})
	default:
		s.ep.metrics.invocations.WithLabelValues("failed").Inc()
		s.complete(conn, proto, m.InvocationID, fmt.Sprintf("Invocation failed, status code %d", status))
	}
}

// complete sends a void (errMsg "") or error completion when the client
// waits for one.
func (s *session) complete(conn *core.Conn, proto hubproto.Protocol, invocationID, errMsg string) {
	if invocationID == "" {
		return
	}
	conn.Deliver(&core.Message{Type: core.Framed, Data: proto.AppendCompletion(nil, invocationID, errMsg)})
}
