package hubproto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// RecordSeparator terminates every JSON record (handshake and JSON hub messages).
const RecordSeparator byte = 0x1E

// Kind is the "type" of a hub message.
type Kind uint8

// Message kinds of the hub protocol. Type values a decoder does not know keep their number when
// it fits 1..255 and become 0 otherwise; callers ignore them.
const (
	Invocation       Kind = 1
	StreamItem       Kind = 2
	Completion       Kind = 3
	StreamInvocation Kind = 4
	CancelInvocation Kind = 5
	Ping             Kind = 6
	Close            Kind = 7
	Ack              Kind = 8
	Sequence         Kind = 9
)

// Trackable reports whether stateful reconnect numbers the kind (Invocation, StreamItem,
// Completion, StreamInvocation, CancelInvocation).
func (k Kind) Trackable() bool {
	return k >= Invocation && k <= CancelInvocation
}

// String returns the message kind's name, for logs and metric labels.
func (k Kind) String() string {
	switch k {
	case Invocation:
		return "invocation"
	case StreamItem:
		return "stream_item"
	case Completion:
		return "completion"
	case StreamInvocation:
		return "stream_invocation"
	case CancelInvocation:
		return "cancel_invocation"
	case Ping:
		return "ping"
	case Close:
		return "close"
	case Ack:
		return "ack"
	case Sequence:
		return "sequence"
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// kindOf maps a decoded "type" value to a Kind: 1..255 keep their number, anything else is 0.
func kindOf(v int64) Kind {
	if v < 1 || v > 255 {
		return 0
	}
	return Kind(v)
}

var (
	// ErrIncomplete means the buffer does not hold a whole record yet; stream transports keep the
	// bytes and read more.
	ErrIncomplete = errors.New("hubproto: incomplete message")
	// ErrTooLarge means a framed message is longer than the caller's limit.
	ErrTooLarge = errors.New("hubproto: message too large")
	// ErrMalformed wraps every framing, handshake and decoding error caused by bad input.
	ErrMalformed = errors.New("hubproto: malformed message")
	// ErrUnsupportedMediaType is returned by ParsePayload for a Content-Type it cannot read
	// (REST callers answer 415).
	ErrUnsupportedMediaType = errors.New("Unsupported content type.")
)

// malformed returns an error wrapping ErrMalformed with a description of the problem.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Message is one decoded hub message. Fields a kind does not carry stay zero.
type Message struct {
	Kind         Kind
	InvocationID string            // "" when absent
	Target       string            // Invocation, StreamInvocation
	Arguments    int               // number of arguments (for validation/metrics)
	StreamIDs    []string          // Invocation, StreamInvocation
	Headers      map[string]string // nil when absent or empty
	Error        string            // Completion error / Close error
	HasResult    bool              // Completion carries a result
	// Result is the raw result value of a Completion that carries one, in the protocol's
	// encoding (JSON text, or one MessagePack value); nil otherwise. It aliases the input of
	// Decode. ResultJSON turns it into JSON.
	Result         []byte
	AllowReconnect bool   // Close
	SequenceID     uint64 // Ack, Sequence
	// Raw is the message WITHOUT transport framing (the JSON object without 0x1E, the msgpack
	// array without its VarInt prefix). It aliases the input of Decode.
	Raw []byte
}

// Protocol is one hub protocol encoding ("json" or "messagepack").
type Protocol interface {
	// Name is the protocol name used in the handshake: "json" or "messagepack".
	Name() string
	// Binary reports the transfer format: false = Text (json), true = Binary (messagepack).
	Binary() bool
	// Next splits the first framed message off buf. It returns ErrIncomplete when buf holds only
	// part of one (msg and rest are then unspecified), an error wrapping ErrTooLarge when the
	// message is longer than maxMessage (maxMessage <= 0 means no limit), and an error wrapping
	// ErrMalformed when the framing itself is bad.
	Next(buf []byte, maxMessage int) (msg, rest []byte, err error)
	// Decode parses one unframed message. Unknown "type" values decode with their Kind and no
	// error (callers ignore them); malformed messages return an error wrapping ErrMalformed.
	Decode(msg []byte) (Message, error)

	// AppendPing appends a complete framed Ping.
	AppendPing(dst []byte) []byte
	// AppendClose appends a complete framed Close. The JSON encoding omits error when "" and
	// allowReconnect when false; MessagePack always writes [7, error|nil, allowReconnect].
	AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte
	// AppendAck appends a complete framed Ack.
	AppendAck(dst []byte, seq uint64) []byte
	// AppendSequence appends a complete framed Sequence.
	AppendSequence(dst []byte, seq uint64) []byte
	// AppendCompletion appends a complete framed Completion: void when errMsg == "", else an
	// error completion.
	AppendCompletion(dst []byte, invocationID, errMsg string) []byte
	// AppendInvocation frames a server→client invocation from the canonical JSON invocation that
	// ParsePayload produces ({"type":1,"target":"...","arguments":[...]}, no separator). The JSON
	// protocol appends it verbatim + 0x1E; MessagePack converts it to
	// [1, {}, invocationId|nil, target, [args...]].
	AppendInvocation(dst []byte, jsonInvocation []byte) ([]byte, error)
	// AppendStreamItem appends a complete framed StreamItem of stream invocationID carrying
	// jsonItem, one JSON value (MessagePack converts it as AppendInvocation converts
	// arguments).
	AppendStreamItem(dst []byte, invocationID string, jsonItem []byte) ([]byte, error)
	// ResultJSON appends a Completion's Result (Message.Result of this protocol) as JSON text:
	// verbatim for JSON, converted for MessagePack (see AppendJSONFromMsgpack).
	ResultJSON(dst []byte, result []byte) ([]byte, error)
}

// JSON is the "json" hub protocol (Text transfer format).
var JSON Protocol = jsonProtocol{}

// MessagePack is the "messagepack" hub protocol (Binary transfer format).
var MessagePack Protocol = msgpackProtocol{}

// Lookup returns the protocol named in a handshake. Names compare case-insensitively, as the
// ASP.NET server does.
func Lookup(name string) (Protocol, bool) {
	switch {
	case strings.EqualFold(name, "json"):
		return JSON, true
	case strings.EqualFold(name, "messagepack"):
		return MessagePack, true
	}
	return nil, false
}
