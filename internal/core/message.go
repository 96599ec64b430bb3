package core

import (
	"sync"
	"time"
)

// DataType is the kind of a message payload.
type DataType uint8

// Payload kinds, as the client protocols name them.
const (
	Binary DataType = iota
	Text
	JSON
	Protobuf
	// Framed data is already in the wire format of the one conn it is
	// delivered to (an upstream's answer relayed verbatim): codecs pass it
	// through. It is only used with Conn.Deliver.
	Framed
)

func (t DataType) String() string {
	switch t {
	case Text:
		return "text"
	case JSON:
		return "json"
	case Protobuf:
		return "protobuf"
	case Framed:
		return "framed"
	default:
		return "binary"
	}
}

// Origin says who sent a message, as clients see it.
type Origin uint8

// Message origins.
const (
	FromServer Origin = iota // REST or server-side send
	FromGroup                // published to a group (by a client or REST)
)

// Message is one payload on its way to conns. It is immutable once sent; the
// per-codec encodings are computed on first use and shared by every recipient.
//
// Type and From are side by side (they share one word) so that a message,
// with its allocation header, stays within the 704-byte size class.
type Message struct {
	Type       DataType
	From       Origin
	Data       []byte
	Group      string    // for FromGroup
	FromUserID string    // sending client's user id, "" when none
	Expires    time.Time // zero: never; else dropped from queues not written by then
	// Accepted is when the send was accepted (Unix nanoseconds): Hub.Send,
	// SendStart and Publish set it when it is 0, and a clustered broker
	// when the operation arrives from another node. The transports measure
	// the delivery latency from it; 0 (replies, replays) is not measured.
	Accepted int64

	mu     sync.Mutex
	frames [maxCodecs]Frame
	filled uint16

	// Offset and Epoch place a message of a history-keeping group in its
	// group's stream (History.Append sets them; 0 and "" otherwise). Codecs
	// that can carry them (the JSON subprotocols, SignalR invocation
	// headers) do.
	Offset uint64
	Epoch  string
	// StateConn and StateAt: a GroupState change's conn and time (Unix ms).
	StateConn string
	StateAt   int64
	// Stream, when set, makes the message a fragment of a client's group
	// stream (Web PubSub openGroupStream): its place in the stream, or its
	// end. Codecs that can carry it (the JSON subprotocols) do.
	Stream *Stream
	// IdempotencyKey is the Idempotency-Key of the REST send that produced
	// the message, kept in the history record so that retries stay
	// idempotent after a restart; "" when none. It is never encoded.
	IdempotencyKey string
}

// Stream places a group message in a client's group stream.
type Stream struct {
	ID  string // the stream id the sender chose
	Seq uint64 // the fragment's sequence id, from 1; the end marker's is the next one
	End bool   // the end of the stream (its data may be empty)
	// Error, when set on the end, says why the stream ended early.
	Error *StreamError
}

// StreamError is why a group stream ended early.
type StreamError struct {
	Name    string // e.g. IdleTimeout, StreamAborted
	Message string
	Code    string // the sender's userErrorCode, "" when none
}

// Frame is an encoded message body, ready for a transport.
type Frame struct {
	Data   []byte
	Binary bool
}

// maxCodecs bounds Codec.Key values.
const maxCodecs = 16

// Codec encodes messages for one client protocol. Dialects implement it.
type Codec interface {
	// Key is a small number, unique among codecs and below 16, that names the
	// encoding for the per-message cache.
	Key() int
	// EncodeMessage encodes m for every conn of this codec. The result is
	// shared; it must not depend on the conn. A nil Data means the protocol
	// has no form of m: the conn gets nothing.
	EncodeMessage(m *Message) Frame
	// Sequenced reports whether data messages carry per-conn sequence ids and
	// stay buffered until the client acknowledges them (reliable protocols).
	Sequenced() bool
	// AppendHead appends the per-conn bytes that precede a data message body
	// with sequence id seq (only called when Sequenced). body is the shared
	// body that follows (a protobuf head holds the length of both).
	AppendHead(dst []byte, seq uint64, body []byte) []byte
	// EncodeDisconnected encodes the notice sent before the server closes a
	// conn; ok is false when the protocol has none.
	EncodeDisconnected(reason string) (f Frame, ok bool)
}

// Resumer is implemented by sequenced codecs whose protocol announces a
// resumed stream (SignalR's Sequence message): when a session is resumed on a
// new link, ResumeFrame's frame is queued before the replayed messages. next
// is the sequence id of the first message sent again, or of the next new one
// when none is pending.
type Resumer interface {
	ResumeFrame(next uint64) Frame
}

// GoingAwayEncoder is implemented by codecs whose protocol tells clients that
// the server is going away and they may come back (SignalR's Close with
// allowReconnect): the server's shutdown sends EncodeGoingAway's frame
// instead of EncodeDisconnected's.
type GoingAwayEncoder interface {
	EncodeGoingAway(reason string) Frame
}

// encode returns the frame of m for c, encoding it once.
func (m *Message) encode(c Codec) Frame {
	k := c.Key()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.filled&(1<<k) == 0 {
		m.frames[k] = c.EncodeMessage(m)
		m.filled |= 1 << k
	}
	return m.frames[k]
}
