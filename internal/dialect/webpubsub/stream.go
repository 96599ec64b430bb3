package webpubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

// StreamConfig bounds the group streams of JSON clients (openGroupStream:
// a sendToGroup with a stream descriptor, then streamData fragments and a
// streamEnd).
type StreamConfig struct {
	// MaxPerConn bounds the streams one connection has open; 0 means
	// DefaultMaxStreams.
	MaxPerConn int
	// MaxFragmentBytes bounds one fragment's decoded data; 0 means
	// DefaultMaxFragmentBytes.
	MaxFragmentBytes int
	// IdleTimeout closes a stream that names no idleTimeoutMs after this
	// long without a fragment or keepalive; 0 means DefaultStreamIdle.
	IdleTimeout time.Duration
	// MaxIdleTimeout is the longest idleTimeoutMs a client may ask for; 0
	// means DefaultMaxStreamIdle.
	MaxIdleTimeout time.Duration
}

// Defaults of StreamConfig.
const (
	DefaultMaxStreams       = 16
	DefaultMaxFragmentBytes = 256 << 10
	DefaultStreamIdle       = time.Minute
	DefaultMaxStreamIdle    = 10 * time.Minute
)

const (
	minStreamIdle = time.Second // the shortest idleTimeoutMs a client may ask for
	maxStreamID   = 128         // bytes of a stream id
)

// Error names of streamClosed and streamNack.
const (
	streamNotFound    = "StreamNotFound"
	streamBadRequest  = "BadRequest"
	streamForbidden   = "Forbidden"
	streamInternal    = "InternalServerError"
	streamIdleTimeout = "IdleTimeout"
	streamInvalidSeq  = "InvalidSequenceId"
	// Of the end marker members get when a stream ends early.
	streamAborted      = "StreamAborted"      // the sender ended it with an error
	streamSenderClosed = "SenderDisconnected" // the sender's connection ended
)

type streamMetrics struct {
	opened    prometheus.Counter
	fragments prometheus.Counter
	closed    *prometheus.CounterVec
	open      prometheus.Gauge
}

func newStreamMetrics() *streamMetrics {
	return &streamMetrics{
		opened: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Name: "group_streams_opened_total",
			Help: "Client group streams opened."}),
		fragments: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Name: "group_stream_fragments_total",
			Help: "Fragments of client group streams published to their group."}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Name: "group_streams_closed_total",
			Help: "Client group streams closed, by reason: ended, aborted (by the sender), idle_timeout, sender_gone, bad_fragment, publish_failed, message_rate."},
			[]string{"reason"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Name: "group_streams_open",
			Help: "Client group streams open."}),
	}
}

func (m *streamMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.opened, m.fragments, m.closed, m.open}
}

// streams are the open group streams of every connection of the endpoint,
// by connection id. Like invocations they belong to the connection: a
// reliable client's streams survive a dropped socket (the client resends
// the fragments that were not acknowledged, which are taken once).
type streams struct {
	cfg     StreamConfig
	metrics *streamMetrics
	byConn  sync.Map // conn id → *connStreams
}

// connStreams are one connection's open streams. mu is held over a
// stream's publishes, so that its fragments and end reach the group in
// order whatever goroutine (the read loop, an idle timer, the conn's end)
// sends them.
type connStreams struct {
	mu    sync.Mutex
	open  map[string]*groupStream
	ended bool
}

type groupStream struct {
	id, group string
	next      uint64 // the sequence id expected next
	noEcho    bool
	idle      time.Duration
	timer     *time.Timer
}

func (st *streams) of(conn *core.Conn) *connStreams {
	v, _ := st.byConn.LoadOrStore(conn.ID(), &connStreams{})
	return v.(*connStreams)
}

// lookup returns conn's streams, nil when it never opened one.
func (st *streams) lookup(conn *core.Conn) *connStreams {
	if v, ok := st.byConn.Load(conn.ID()); ok {
		return v.(*connStreams)
	}
	return nil
}

// find returns stream id of conn with its connStreams locked, or nils
// (nothing locked) when it is not open.
func (st *streams) find(conn *core.Conn, id string) (cs *connStreams, g *groupStream) {
	cs = st.lookup(conn)
	if cs == nil {
		return nil, nil
	}
	cs.mu.Lock()
	if g = cs.open[id]; g == nil {
		cs.mu.Unlock()
		return nil, nil
	}
	return cs, g
}

// openStream opens a group stream: a sendToGroup with a stream descriptor.
// Whatever goes wrong is told with streamClosed (the client waits for the
// stream's first streamAck, not for an ack).
func (s *session) openStream(r *request) error {
	var desc struct {
		StreamID      string `json:"streamId"`
		IdleTimeoutMs *int64 `json:"idleTimeoutMs"`
	}
	if err := json.Unmarshal(r.Stream, &desc); err != nil || desc.StreamID == "" || len(desc.StreamID) > maxStreamID {
		// No usable stream id: nothing to name in a streamClosed.
		return s.reject(r, "bad_stream", ackBadRequest, fmt.Sprintf("stream must be an object with a streamId of 1 to %d bytes", maxStreamID))
	}
	id := desc.StreamID
	refuse := func(metric, name, msg string) error {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
		s.conn.Send(encodeStreamClosed(id, name, msg))
		return nil
	}
	cfg := s.ep.streams.cfg
	idle := cfg.IdleTimeout
	if desc.IdleTimeoutMs != nil {
		idle = time.Duration(*desc.IdleTimeoutMs) * time.Millisecond
		if idle < minStreamIdle || idle > cfg.MaxIdleTimeout {
			return refuse("bad_stream", streamBadRequest, fmt.Sprintf("idleTimeoutMs must be between %d and %d", minStreamIdle.Milliseconds(), cfg.MaxIdleTimeout.Milliseconds()))
		}
	}
	switch {
	case !core.ValidGroupName(r.Group):
		return refuse("bad_group", streamBadRequest, "invalid group name: it must be 1 to 1024 characters and not only whitespace")
	case !s.conn.Can(core.PermSend, r.Group):
		return refuse("forbidden", streamForbidden, fmt.Sprintf("the connection has no permission to send to group %s", excerpt.Quote(r.Group)))
	case len(bytes.TrimSpace(r.Data)) > 0 || r.DataType != "":
		return refuse("bad_stream", streamBadRequest, "a stream's opening sendToGroup carries no data: send it with streamData")
	case s.hub.KeepsHistory(r.Group):
		return refuse("stream_history", streamBadRequest, fmt.Sprintf("group %s keeps history, and group streams are not kept in history: send its messages with sendToGroup", excerpt.Quote(r.Group)))
	}
	cs := s.ep.streams.of(s.conn)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if st := cs.open[id]; st != nil {
		if st.group != r.Group {
			return refuse("bad_stream", streamBadRequest, fmt.Sprintf("stream %s is already open to another group", excerpt.Quote(id)))
		}
		s.conn.Send(encodeStreamAck(id, st.next)) // the client asked again (it recovered): where it stands
		return nil
	}
	if cs.ended || s.conn.Ended() {
		// The conn ended (its streams were ended, or are about to be): an
		// entry made now would outlive it.
		if len(cs.open) == 0 { // else its OnConnEnd, still to come, ends them
			s.ep.streams.byConn.CompareAndDelete(s.conn.ID(), cs)
		}
		return nil
	}
	if len(cs.open) >= cfg.MaxPerConn {
		return refuse("stream_limit", ackTooManyRequests, fmt.Sprintf("the connection already has %d group streams open (streams.max_per_conn)", cfg.MaxPerConn))
	}
	if cs.open == nil {
		cs.open = make(map[string]*groupStream)
	}
	st := &groupStream{id: id, group: r.Group, next: 1, noEcho: r.NoEcho, idle: idle}
	conn, ep := s.conn, s.ep
	st.timer = time.AfterFunc(idle, func() { ep.streams.expire(ep, conn, st) })
	cs.open[id] = st
	ep.streams.metrics.opened.Inc()
	ep.streams.metrics.open.Inc()
	s.conn.Send(encodeStreamAck(id, 1))
	if r.AckID != nil {
		s.conn.Send(encodeAck(*r.AckID, "", ""))
	}
	return nil
}

// streamID reads the streamId of a streamData or streamEnd; "" when absent.
func streamID(r *request) (string, bool) {
	var id string
	if json.Unmarshal(r.StreamID, &id) != nil || id == "" || len(id) > maxStreamID {
		return "", false
	}
	return id, true
}

// streamData publishes one fragment of an open stream in order: a fragment
// already taken (resent after a recovery) is acknowledged again and not
// published twice, one past the expected id is refused with streamNack; a
// streamData with no sequence id is a keepalive.
func (s *session) streamData(r *request) error {
	id, ok := streamID(r)
	if !ok {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "bad_stream").Inc()
		return nil // nothing to name in an answer
	}
	cs, st := s.ep.streams.find(s.conn, id)
	if st == nil {
		return s.streamNotFound(id)
	}
	defer cs.mu.Unlock()
	st.timer.Reset(st.idle)
	if len(r.StreamSequenceID) == 0 {
		return nil // keepalive
	}
	seq, err := strconv.ParseUint(string(r.StreamSequenceID), 10, 64)
	if err != nil || seq == 0 {
		s.closeStreamLocked(cs, st, "bad_fragment", streamBadRequest, "streamSequenceId must be a positive integer")
		return nil
	}
	switch {
	case seq < st.next:
		s.conn.Send(encodeStreamAck(id, st.next)) // taken already
		return nil
	case seq > st.next:
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "stream_sequence").Inc()
		s.conn.Send(encodeStreamNack(id, streamInvalidSeq, fmt.Sprintf("fragment %d is out of order: %d is expected", seq, st.next), st.next))
		return nil
	}
	typ, payload, err := r.payload()
	if err != nil {
		s.closeStreamLocked(cs, st, "bad_fragment", streamBadRequest, excerpt.Error(err))
		return nil
	}
	if len(payload) > s.ep.streams.cfg.MaxFragmentBytes {
		s.closeStreamLocked(cs, st, "bad_fragment", streamBadRequest, fmt.Sprintf("a fragment of %d bytes exceeds streams.max_fragment_bytes (%d)", len(payload), s.ep.streams.cfg.MaxFragmentBytes))
		return nil
	}
	m := &core.Message{Type: typ, Data: payload, From: core.FromGroup, Group: st.group, FromUserID: s.conn.UserID(), Stream: &core.Stream{ID: id, Seq: seq}}
	if err := s.hub.Publish(context.Background(), s.conn, st.group, m, st.noEcho); err != nil {
		s.ep.log.Warn("group stream fragment not published", "hub", s.hub.Name(), "conn_id", s.conn.ID(), "group", st.group, "err", err)
		s.closeStreamLocked(cs, st, "publish_failed", streamInternal, "the fragment could not be sent to the group: "+excerpt.Error(err))
		return nil
	}
	s.ep.streams.metrics.fragments.Inc()
	st.next++
	s.conn.Send(encodeStreamAck(id, st.next))
	return nil
}

// streamEnd ends an open stream: the group's members get its end (with
// the sender's error, if any), the sender a streamClosed.
func (s *session) streamEnd(r *request) error {
	id, ok := streamID(r)
	if !ok {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "bad_stream").Inc()
		return nil
	}
	cs, st := s.ep.streams.find(s.conn, id)
	if st == nil {
		return s.streamNotFound(id)
	}
	defer cs.mu.Unlock()
	var endErr *core.StreamError
	reason := "ended"
	if b := bytes.TrimSpace(r.Error); len(b) > 0 && !bytes.Equal(b, []byte("null")) {
		var e struct {
			Message       string `json:"message"`
			UserErrorCode string `json:"userErrorCode"`
		}
		json.Unmarshal(b, &e) // a malformed error still aborts the stream
		endErr = &core.StreamError{Name: streamAborted, Message: e.Message, Code: e.UserErrorCode}
		reason = "aborted"
	}
	s.ep.streams.finishLocked(s.ep, s.conn, cs, st, endErr, reason)
	s.conn.Send(encodeStreamClosed(id, "", ""))
	return nil
}

// refuseStream closes the stream a refused stream request names (a
// sendToGroup opening one is answered with streamClosed), with the reason.
func (s *session) refuseStream(r *request, metric, name, msg string) error {
	id, ok := streamID(r)
	if r.Type == "sendToGroup" {
		var desc struct {
			StreamID string `json:"streamId"`
		}
		ok = json.Unmarshal(r.Stream, &desc) == nil && desc.StreamID != "" && len(desc.StreamID) <= maxStreamID
		id = desc.StreamID
	}
	if !ok {
		s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
		return nil
	}
	if cs, st := s.ep.streams.find(s.conn, id); st != nil {
		defer cs.mu.Unlock()
		s.closeStreamLocked(cs, st, metric, name, msg)
		return nil
	}
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, metric).Inc()
	s.conn.Send(encodeStreamClosed(id, name, msg))
	return nil
}

// streamNotFound answers a streamData or streamEnd of a stream that is not
// open (never opened, or closed already).
func (s *session) streamNotFound(id string) error {
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, "stream_not_found").Inc()
	s.conn.Send(encodeStreamClosed(id, streamNotFound, fmt.Sprintf("stream %s is not open on this connection", excerpt.Quote(id))))
	return nil
}

// closeStreamLocked ends st early with an error: members get the end, the
// sender a streamClosed with the error. cs.mu is held.
func (s *session) closeStreamLocked(cs *connStreams, st *groupStream, reason, name, msg string) {
	s.ep.metrics.requestErrors.WithLabelValues(s.dialect, reason).Inc()
	s.ep.streams.finishLocked(s.ep, s.conn, cs, st, &core.StreamError{Name: name, Message: msg}, reason)
	s.conn.Send(encodeStreamClosed(st.id, name, msg))
}

// finishLocked forgets st and publishes its end marker to its group (an
// empty text message with endOfStream, which the official client needs to
// close the stream it reassembles). cs.mu is held.
func (st *streams) finishLocked(ep *Endpoint, conn *core.Conn, cs *connStreams, g *groupStream, endErr *core.StreamError, reason string) {
	g.timer.Stop()
	delete(cs.open, g.id)
	st.metrics.open.Dec()
	st.metrics.closed.WithLabelValues(reason).Inc()
	m := &core.Message{Type: core.Text, Data: []byte{}, From: core.FromGroup, Group: g.group, FromUserID: conn.UserID(),
		Stream: &core.Stream{ID: g.id, Seq: g.next, End: true, Error: endErr}}
	if err := conn.Hub().Publish(context.Background(), conn, g.group, m, g.noEcho); err != nil {
		ep.log.Warn("group stream end not published", "hub", conn.Hub().Name(), "conn_id", conn.ID(), "group", g.group, "err", err)
	}
}

// expire closes a stream that stayed idle past its timeout.
func (st *streams) expire(ep *Endpoint, conn *core.Conn, g *groupStream) {
	cs := st.lookup(conn)
	if cs == nil {
		return // the connection ended
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.open[g.id] != g {
		return // closed meanwhile (or its timer was reset and fired late)
	}
	msg := fmt.Sprintf("no fragment or keepalive within %v", g.idle)
	st.finishLocked(ep, conn, cs, g, &core.StreamError{Name: streamIdleTimeout, Message: msg}, "idle_timeout")
	conn.Send(encodeStreamClosed(g.id, streamIdleTimeout, msg))
}

// connEnded ends the streams of a connection that ended: members get each
// stream's end with an error.
func (st *streams) connEnded(ep *Endpoint, conn *core.Conn) {
	v, ok := st.byConn.LoadAndDelete(conn.ID())
	if !ok {
		return
	}
	cs := v.(*connStreams)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.ended = true
	for _, g := range cs.open {
		st.finishLocked(ep, conn, cs, g, &core.StreamError{Name: streamSenderClosed, Message: "the sender's connection ended"}, "sender_gone")
	}
}

func encodeStreamAck(id string, expected uint64) core.Frame {
	b := append([]byte(nil), `{"type":"streamAck","streamId":`...)
	b = jsonstring.Append(b, id)
	b = append(b, `,"expectedSequenceId":`...)
	b = strconv.AppendUint(b, expected, 10)
	return core.Frame{Data: append(b, '}')}
}

func encodeStreamNack(id, name, msg string, expected uint64) core.Frame {
	b := append([]byte(nil), `{"type":"streamNack","streamId":`...)
	b = jsonstring.Append(b, id)
	b = append(b, `,"name":`...)
	b = jsonstring.Append(b, name)
	b = append(b, `,"message":`...)
	b = jsonstring.Append(b, msg)
	b = append(b, `,"expectedSequenceId":`...)
	b = strconv.AppendUint(b, expected, 10)
	return core.Frame{Data: append(b, '}')}
}

// encodeStreamClosed is a streamClosed, with an error when name is set.
func encodeStreamClosed(id, name, msg string) core.Frame {
	b := append([]byte(nil), `{"type":"streamClosed","streamId":`...)
	b = jsonstring.Append(b, id)
	if name != "" {
		b = append(b, `,"error":{"name":`...)
		b = jsonstring.Append(b, name)
		b = append(b, `,"message":`...)
		b = jsonstring.Append(b, msg)
		b = append(b, '}')
	}
	return core.Frame{Data: append(b, '}')}
}
