package webpubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Ack error names of the JSON subprotocols.
const (
	ackForbidden  = "Forbidden"
	ackDuplicate  = "Duplicate"
	ackBadRequest = "BadRequest"
	ackInternal   = "InternalServerError"
	// ackHistoryUnavailable refuses a send to (or a history read of) a
	// group that keeps history while the history's storage is unavailable
	// (core.ErrHistoryUnavailable: a full disk, an I/O error).
	ackHistoryUnavailable = "HistoryUnavailable"
	// ackTooManyRequests refuses a request over limits.conn_message_rate.
	// The service's schema names no such error (clients must tolerate
	// unknown names); this is HTTP 429's name.
	ackTooManyRequests = "TooManyRequests"
)

// Close of a connection that stays over its message rate.
const (
	closeRateCode   = 1008
	closeRateReason = "message rate limit exceeded"
	msgRateRefused  = "too many messages: the connection is over its message rate limit; this request was not processed"
)

// rejectUnavailable answers a request refused with core.ErrHistoryUnavailable:
// the ack names the cause, no file names.
func (s *session) rejectUnavailable(r *request, err error) error {
	return s.reject(r, "history_unavailable", ackHistoryUnavailable,
		"history storage unavailable: "+history.Reason(err)+"; sends to groups that keep history are refused until it recovers")
}

// session is the read side of one conn's socket.
//
// A user event waits for its handler off the read goroutine, so that the
// socket keeps being read: a client that goes away meanwhile ends the
// session, which cancels the handler's request. Requests stay one at a
// time and in order: the next message waits for the event's answer.
type session struct {
	ep      *Endpoint
	conn    *core.Conn
	hub     *core.Hub
	sock    clientSocket
	raw     bool
	pb      bool // a protobuf subprotocol: binary frames, protobuf acks
	dialect string
	in      prometheus.Counter // messages in, for this hub and dialect
	inBytes prometheus.Counter

	slot   *ratelimit.Slot   // the socket's place in its client IP's count
	budget *ratelimit.Budget // inbound message rate; nil: unlimited

	// ctx ends when the socket is gone (HandleClose) or the endpoint closes;
	// it bounds the session's user events.
	ctx    context.Context
	cancel context.CancelFunc
	// event is closed once the user event in flight is answered; nil when
	// none is. Only the read side (HandleMessage, HandleClose) uses it.
	event chan struct{}
}

// clientSocket is the client's socket as a session uses it: a
// *websocket.Socket, or the owner's end of a relay from the node that has
// the client's socket (relay.Socket).
type clientSocket interface {
	core.Link
	// ClosedByClient reports whether the client closed it with a close
	// frame (the session ends) rather than dropping (it may be recovered).
	ClosedByClient() bool
}

func newSession(e *Endpoint, conn *core.Conn, hub *core.Hub, sock clientSocket, dialect string, slot *ratelimit.Slot) *session {
	ctx, cancel := context.WithCancel(e.ctx)
	return &session{ep: e, conn: conn, hub: hub, sock: sock, raw: dialect == "raw", pb: dialect == dialectProtobuf || dialect == dialectProtobufReliable, dialect: dialect,
		in:      e.metrics.messagesIn.WithLabelValues(hub.MetricLabel(), dialect),
		inBytes: e.metrics.bytesIn.WithLabelValues(hub.MetricLabel(), dialect),
		slot:    slot, budget: e.limits.Budget(),
		ctx: ctx, cancel: cancel,
	}
}

// waitEvent returns once the user event in flight, if any, is answered.
func (s *session) waitEvent() {
	if s.event != nil {
		<-s.event
		s.event = nil
	}
}

// startEvent runs call, a user event and its answer, on its own goroutine;
// the next message waits for it.
func (s *session) startEvent(call func()) {
	done := make(chan struct{})
	s.event = done
	go func() {
		defer close(done)
		call()
	}()
}

// HandleClose implements websocket.Handler.
// A client that says goodbye with a close frame ends its session; one whose
// connection dropped may come back within the recovery window (reliable
// protocols).
func (s *session) HandleClose(reason string) {
	s.slot.Release()
	s.cancel() // a user event in flight has no one to answer
	s.waitEvent()
	if s.sock.ClosedByClient() {
		s.conn.End(s.sock, reason)
	} else {
		s.conn.Detach(s.sock, reason)
	}
	if s.conn.Ended() { // not kept for recovery: its invocations and streams end
		s.ep.ConnEnded(s.conn)
	}
}

// HandleMessage implements websocket.Handler.
func (s *session) HandleMessage(data []byte, binary bool) error {
	s.waitEvent()
	s.in.Inc()
	s.inBytes.Add(float64(len(data)))
	if s.raw {
		switch s.budget.Take() {
		case ratelimit.Close:
			return s.closeForRate()
		case ratelimit.Refuse: // raw clients have no acks: dropped
			s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "message_rate").Inc()
			return nil
		}
		return s.rawEvent(data, binary)
	}
	var r *request
	var err error
	switch {
	case s.pb && !binary:
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "text_frame").Inc()
		return &websocket.CloseError{Code: 1003, Reason: "text frames are not supported by " + s.conn.Protocol()}
	case s.pb:
		r, err = decodeProtobufRequest(data)
	case binary:
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "binary_frame").Inc()
		return &websocket.CloseError{Code: 1003, Reason: "binary frames are not supported by " + s.conn.Protocol()}
	default:
		r, err = decodeRequest(data)
	}
	if err != nil {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "malformed").Inc()
		return &websocket.CloseError{Code: 1007, Reason: excerpt.Error(err)}
	}
	verdict := ratelimit.Allow
	if r.Type != "sequenceAck" { // the protocol's own bookkeeping (as SignalR's Ack): not limited
		verdict = s.budget.Take()
	}
	if verdict == ratelimit.Close {
		return s.closeForRate()
	}
	if verdict == ratelimit.Refuse {
		switch {
		case r.Type == "invoke":
			return s.refuseInvoke(r, "message_rate", outcomeRefused, ackTooManyRequests, msgRateRefused)
		case r.Type == "streamData" || r.Type == "streamEnd" || r.Type == "sendToGroup" && len(r.Stream) > 0 && !bytes.Equal(r.Stream, []byte("null")):
			// A dropped fragment would stall its stream (the client resends
			// none): the stream is closed instead, with the reason.
			return s.refuseStream(r, "message_rate", ackTooManyRequests, msgRateRefused)
		}
		return s.reject(r, "message_rate", ackTooManyRequests, msgRateRefused) // dropped when it has no ackId
	}
	switch r.Type {
	case "ping":
		s.conn.Send(pongFrame)
		return nil
	case "sequenceAck":
		if r.SequenceID == nil {
			return s.reject(r, "bad_request", ackBadRequest, "sequenceAck requires sequenceId")
		}
		s.conn.Ack(*r.SequenceID)
		return nil
	case "joinGroup", "leaveGroup", "sendToGroup", "event", "fetchHistory", "setGroupState", "subscribeGroupState", "unsubscribeGroupState":
	case "invoke":
		return s.invoke(r)
	case "cancelInvocation":
		return s.cancelInvocation(r)
	case "streamData":
		return s.streamData(r)
	case "streamEnd":
		return s.streamEnd(r)
	default:
		if r.AckID == nil {
			s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "unknown_type").Inc()
			return &websocket.CloseError{Code: 1007, Reason: fmt.Sprintf("unknown message type %s", excerpt.Quote(r.Type))}
		}
		return s.reject(r, "unknown_type", ackBadRequest, fmt.Sprintf("unknown message type %s", excerpt.Quote(r.Type)))
	}
	if r.AckID != nil && s.conn.SeenAck(*r.AckID) {
		s.conn.Send(s.encodeAck(*r.AckID, ackDuplicate, fmt.Sprintf("ackId %d was already used on this connection", *r.AckID)))
		return nil
	}
	switch r.Type {
	case "joinGroup", "leaveGroup":
		if !core.ValidGroupName(r.Group) {
			return s.reject(r, "bad_group", ackBadRequest, "invalid group name: it must be 1 to 1024 characters and not only whitespace")
		}
		if !s.conn.Can(core.PermJoinLeave, r.Group) {
			return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection has no permission to join or leave group %s", excerpt.Quote(r.Group)))
		}
		var err error
		var res core.JoinResult
		if r.Type == "joinGroup" {
			var from *core.StreamPosition
			if r.Offset != nil {
				from = &core.StreamPosition{Offset: *r.Offset, Epoch: r.Epoch}
			}
			res, err = s.hub.JoinGroupFrom(s.conn, r.Group, from)
		} else {
			err = s.hub.LeaveGroup(s.conn, r.Group)
		}
		if errors.Is(err, core.ErrGroupLimit) {
			return s.reject(r, "group_limit", ackBadRequest, fmt.Sprintf("the connection is already in %d groups", s.ep.node.Limits().MaxGroupsPerConn))
		}
		if err != nil {
			return s.reject(r, "internal", ackInternal, excerpt.Error(err))
		}
		if r.Type == "joinGroup" && !s.pb && (res.History || r.Offset != nil) { // the protobuf ack has no fields for a position
			if r.AckID != nil {
				s.conn.Send(encodeJoinAck(*r.AckID, res, r.Offset != nil))
			}
			return nil
		}
	case "fetchHistory":
		return s.fetchHistory(r)
	case "setGroupState", "subscribeGroupState", "unsubscribeGroupState":
		return s.groupState(r)
	case "sendToGroup":
		if len(r.Stream) > 0 && !bytes.Equal(r.Stream, []byte("null")) {
			return s.openStream(r)
		}
		if !core.ValidGroupName(r.Group) {
			return s.reject(r, "bad_group", ackBadRequest, "invalid group name: it must be 1 to 1024 characters and not only whitespace")
		}
		if !s.conn.Can(core.PermSend, r.Group) {
			return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection has no permission to send to group %s", excerpt.Quote(r.Group)))
		}
		typ, payload, err := r.payload()
		if err != nil {
			return s.reject(r, "bad_data", ackBadRequest, excerpt.Error(err))
		}
		m := &core.Message{Type: typ, Data: payload, From: core.FromGroup, Group: r.Group, FromUserID: s.conn.UserID()}
		if err := s.hub.Publish(context.Background(), s.conn, r.Group, m, r.NoEcho); err != nil {
			if errors.Is(err, core.ErrHistoryUnavailable) {
				return s.rejectUnavailable(r, err)
			}
			return s.reject(r, "internal", ackInternal, excerpt.Error(err))
		}
	case "event":
		if !validEvent(r.Event) {
			return s.reject(r, "bad_event", ackBadRequest, fmt.Sprintf("invalid event name %s", excerpt.Quote(r.Event)))
		}
		typ, payload, err := r.payload()
		if err != nil {
			return s.reject(r, "bad_data", ackBadRequest, excerpt.Error(err))
		}
		if s.ep.up == nil || !s.ep.up.HasUserHandler(s.hub.Name(), r.Event) {
			return s.reject(r, "no_handler", ackInternal, fmt.Sprintf("no event handler is configured for event %s in hub %q", excerpt.Quote(r.Event), s.hub.Name()))
		}
		s.startEvent(func() { s.userEvent(r, typ, payload) })
		return nil
	}
	if r.AckID != nil {
		s.conn.Send(s.encodeAck(*r.AckID, "", ""))
	}
	return nil
}

// closeForRate closes a connection that stays over its message rate with
// 1008; the session ends (a reliable one is not kept for recovery).
func (s *session) closeForRate() error {
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "message_rate_close").Inc()
	// The session ends now, not when the socket is gone (HandleClose): a
	// client that reconnects with its reconnection token between the close
	// frame and the end of the socket would otherwise take the session over
	// and keep going.
	s.conn.End(s.sock, closeRateReason)
	return &websocket.CloseError{Code: closeRateCode, Reason: closeRateReason}
}

// userEvent sends a JSON client's event to its handler and answers with
// the handler's response, if any, then the ack.
func (s *session) userEvent(r *request, typ core.DataType, payload []byte) {
	resp, err := s.ep.up.UserEvent(s.ctx, upConn(s.conn), r.Event, contentTypes[typ], payload)
	if err != nil {
		// The error names the handler's URL and the network error: they
		// are for the operator's log, not for the client.
		s.ep.log.Warn("user event failed", "hub", s.hub.Name(), "conn_id", s.conn.ID(), "event", r.Event, "url", upstream.HandlerURL(err), "err", err)
		s.reject(r, "upstream_failed", ackInternal, "the event handler "+handlerFailure(err).what)
		return
	}
	s.applyEventResponse(resp)
	if r.AckID != nil {
		s.conn.Send(s.encodeAck(*r.AckID, "", ""))
	}
}

// contentTypes maps data types to the Content-Type of user events.
var contentTypes = map[core.DataType]string{
	core.JSON: "application/json", core.Text: "text/plain", core.Binary: "application/octet-stream", core.Protobuf: "application/x-protobuf",
}

// rawEvent sends a raw client frame to the handler of user event "message"
// and the handler's answer back as one frame; without a handler, or when
// the handler fails, the connection is dropped, as the service does.
func (s *session) rawEvent(data []byte, binary bool) error {
	if s.ep.up == nil || !s.ep.up.HasUserHandler(s.hub.Name(), "message") {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "no_handler").Inc()
		return &websocket.CloseError{Code: 1011, Reason: "no event handler is configured for user event 'message'"}
	}
	ct := "text/plain"
	if binary {
		ct = "application/octet-stream"
	}
	data = bytes.Clone(data) // the socket reuses its buffer
	s.startEvent(func() {
		resp, err := s.ep.up.UserEvent(s.ctx, upConn(s.conn), "message", ct, data)
		if err != nil {
			s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "upstream_failed").Inc()
			s.ep.log.Warn("user event failed", "hub", s.hub.Name(), "conn_id", s.conn.ID(), "event", "message", "url", upstream.HandlerURL(err), "err", err)
			s.sock.Close(1011, "the event handler failed")
			return
		}
		s.applyEventResponse(resp)
	})
	return nil
}

// applyEventResponse keeps the connection state the handler set and sends
// its response body, if any, to the client as a server message.
func (s *session) applyEventResponse(resp *upstream.EventResponse) {
	if resp.State != nil {
		s.conn.SetState(*resp.State)
	}
	if len(resp.Body) == 0 {
		return
	}
	typ := map[string]core.DataType{"text": core.Text, "json": core.JSON}[resp.DataType()]
	if resp.DataType() == "binary" {
		typ = core.Binary
	}
	if typ == core.JSON && !json.Valid(resp.Body) {
		typ = core.Text // a handler that says JSON but sends something else
	}
	s.conn.Deliver(&core.Message{Type: typ, Data: resp.Body, From: core.FromServer})
}

// encodeAck encodes an ack in the session's protocol.
func (s *session) encodeAck(id uint64, errName, errMsg string) core.Frame {
	if s.pb {
		return encodeProtobufAck(id, errName, errMsg)
	}
	return encodeAck(id, errName, errMsg)
}

// reject answers r with an error ack when it has an ackId, and counts it.
func (s *session) reject(r *request, metric, name, msg string) error {
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
	if r.AckID != nil {
		s.conn.Send(s.encodeAck(*r.AckID, name, msg))
	}
	return nil
}

// fetchHistory answers a client's catch-up read of a group it may join (or
// is in): a "history" frame with a page of messages after r.Offset, or an
// error ack naming why the history cannot be served.
func (s *session) fetchHistory(r *request) error {
	if !core.ValidGroupName(r.Group) {
		return s.reject(r, "bad_group", ackBadRequest, "invalid group name: it must be 1 to 1024 characters and not only whitespace")
	}
	if !s.conn.InGroup(r.Group) && !s.conn.Can(core.PermJoinLeave, r.Group) {
		return s.reject(r, "forbidden", ackForbidden, fmt.Sprintf("the connection may not read the history of group %s", excerpt.Quote(r.Group)))
	}
	if r.Limit < 0 || r.Limit > maxFetch {
		return s.reject(r, "bad_limit", ackBadRequest, fmt.Sprintf("limit must be between 1 and %d", maxFetch))
	}
	limit := r.Limit
	if limit == 0 {
		limit = defaultFetch
	}
	var after uint64
	if r.Offset != nil {
		after = *r.Offset
	}
	if s.ep.history == nil {
		return s.rejectHistory(r, history.ErrNotKept, history.Messages{})
	}
	page, err := s.ep.history.CatchUp(s.hub.Name(), r.Group, after, r.Epoch, limit)
	if err != nil {
		return s.rejectHistory(r, err, page)
	}
	s.conn.Send(encodeHistory(r.AckID, r.Group, &page))
	return nil
}

// Page sizes of fetchHistory.
const (
	defaultFetch = 100
	maxFetch     = 1000
)

// rejectHistory answers a fetchHistory that history refused.
func (s *session) rejectHistory(r *request, err error, page history.Messages) error {
	if errors.Is(err, core.ErrHistoryUnavailable) {
		return s.rejectUnavailable(r, err)
	}
	var name, metric, msg string
	switch {
	case errors.Is(err, history.ErrNotKept):
		name, metric, msg = "NotKept", "history_not_kept", fmt.Sprintf("group %s keeps no history", excerpt.Quote(r.Group))
	case errors.Is(err, history.ErrOffsetGone):
		name, metric, msg = "OffsetGone", "history_gone", fmt.Sprintf("offset %d is older than the retained history, which starts at %d", deref(r.Offset), page.Oldest)
	case errors.Is(err, history.ErrEpochChanged):
		name, metric, msg = "EpochChanged", "history_epoch", fmt.Sprintf("the group's stream was reset: epoch %s is now %q", excerpt.Quote(r.Epoch), page.Epoch)
	case errors.Is(err, history.ErrOffsetAhead):
		name, metric, msg = "OffsetAhead", "history_ahead", fmt.Sprintf("offset %d is beyond the stream's last offset %d", deref(r.Offset), page.Offset)
	default:
		s.ep.log.Warn("history read failed", "hub", s.hub.Name(), "group", r.Group, "err", err)
		return s.reject(r, "internal", ackInternal, "the history could not be read")
	}
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
	if r.AckID != nil {
		f := encodeAck(*r.AckID, name, msg)
		b := f.Data[:len(f.Data)-1] // reopen the object
		b = append(b, `,"oldest":`...)
		b = strconv.AppendUint(b, page.Oldest, 10)
		b = appendPosition(b, page.Offset, page.Epoch)
		s.conn.Send(core.Frame{Data: append(b, '}')})
	}
	return nil
}

// failure is what a client is told of an event handler that failed.
type failure struct {
	status int    // of a refused handshake
	metric string // reason label of the refusal
	what   string // completes "the … event handler …"
}

// handlerFailure says what went wrong with an event handler in words fit for
// the client: whether it was unreachable, slow, answered badly or refused (with
// its status). It never includes err's text, which names the handler's URL and
// the network error.
func handlerFailure(err error) failure {
	var rej *upstream.RejectError
	switch {
	case errors.As(err, &rej):
		return failure{rej.Status, "upstream_rejected", fmt.Sprintf("answered %d", rej.Status)}
	case errors.Is(err, context.Canceled):
		return failure{http.StatusServiceUnavailable, "upstream_cancelled", "was cancelled: the connection or the server is closing"}
	case errors.Is(err, context.DeadlineExceeded):
		return failure{http.StatusGatewayTimeout, "upstream_timeout", "did not answer in time"}
	case errors.Is(err, upstream.ErrClosed):
		return failure{http.StatusServiceUnavailable, "upstream_closed", "is unavailable: the server is shutting down"}
	case errors.Is(err, upstream.ErrBadResponse):
		return failure{http.StatusBadGateway, "upstream_bad_response", "returned an invalid response"}
	default:
		return failure{http.StatusBadGateway, "upstream_unavailable", "is unavailable"}
	}
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
