package hubproto

import (
	"fmt"

	"github.com/tinylib/msgp/msgp"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// msgpackProtocol is the "messagepack" hub protocol: each message is a MessagePack array prefixed
// by its length as a VarInt (7 bits per byte, least significant group first, at most 5 bytes).
type msgpackProtocol struct{}

func (msgpackProtocol) Name() string { return "messagepack" }
func (msgpackProtocol) Binary() bool { return true }

// maxVarintLen is the longest length prefix; its fifth byte may carry only 3 bits (< 2 GB).
const maxVarintLen = 5

func (msgpackProtocol) Next(buf []byte, maxMessage int) (msg, rest []byte, err error) {
	var length uint64
	n := 0
	for {
		if n >= len(buf) {
			return nil, nil, ErrIncomplete
		}
		c := buf[n]
		length |= uint64(c&0x7f) << (7 * n)
		n++
		if c&0x80 == 0 {
			break
		}
		if n == maxVarintLen {
			return nil, nil, malformed("length prefix longer than %d bytes", maxVarintLen)
		}
	}
	if n == maxVarintLen && buf[n-1] > 7 {
		return nil, nil, malformed("messages over 2 GB are not supported")
	}
	if maxMessage > 0 && length > uint64(maxMessage) {
		return nil, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, length, maxMessage)
	}
	if uint64(len(buf)-n) < length {
		return nil, nil, ErrIncomplete
	}
	end := n + int(length)
	return buf[n:end], buf[end:], nil
}

// appendVarint appends the length prefix of an n-byte message.
func appendVarint(dst []byte, n int) []byte {
	u := uint32(n)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// beginFrame reserves room for the longest length prefix; endFrame writes the real prefix and
// moves the message body up against it.
func beginFrame(dst []byte) ([]byte, int) {
	start := len(dst)
	return append(dst, 0, 0, 0, 0, 0), start
}

func endFrame(dst []byte, start int) []byte {
	n := len(dst) - start - maxVarintLen
	var prefix [maxVarintLen]byte
	k := len(appendVarint(prefix[:0], n))
	copy(dst[start+k:], dst[start+maxVarintLen:])
	copy(dst[start:], prefix[:k])
	return dst[:start+k+n]
}

func (msgpackProtocol) Decode(msg []byte) (Message, error) {
	m := Message{Raw: msg}
	n, b, err := msgp.ReadArrayHeaderBytes(msg)
	if err != nil {
		return m, malformed("message is not a MessagePack array: %v", err)
	}
	if n == 0 {
		return m, malformed("message array is empty")
	}
	m.Kind, b, err = readKind(b)
	if err != nil {
		return m, err
	}
	// need checks the element count; left counts the elements not read yet.
	need := func(min uint32) error {
		if n < min {
			return malformed("%s message has %d elements, needs at least %d", m.Kind, n, min)
		}
		return nil
	}
	left := n - 1
	switch m.Kind {
	case Invocation, StreamInvocation:
		if err := need(5); err != nil {
			return m, err
		}
		if m.Headers, b, err = readHeaders(b); err != nil {
			return m, err
		}
		if m.InvocationID, b, err = readInvocationID(b, m.Kind == Invocation); err != nil {
			return m, err
		}
		var target []byte
		if target, b, err = msgp.ReadStringZC(b); err != nil {
			return m, malformed("target: %v", err)
		}
		m.Target = string(target)
		if m.Arguments, b, err = skipArray(b, "arguments"); err != nil {
			return m, err
		}
		left -= 4
		if n >= 6 {
			if m.StreamIDs, b, err = readStringArray(b, "stream ids"); err != nil {
				return m, err
			}
			left--
		}
	case StreamItem:
		if err := need(4); err != nil {
			return m, err
		}
		if m.Headers, b, err = readHeaders(b); err != nil {
			return m, err
		}
		if m.InvocationID, b, err = readInvocationID(b, false); err != nil {
			return m, err
		}
		if b, err = msgp.Skip(b); err != nil {
			return m, malformed("item: %v", err)
		}
		left -= 3
	case Completion:
		if err := need(4); err != nil {
			return m, err
		}
		if m.Headers, b, err = readHeaders(b); err != nil {
			return m, err
		}
		if m.InvocationID, b, err = readInvocationID(b, false); err != nil {
			return m, err
		}
		var resultKind int64
		if resultKind, b, err = msgp.ReadInt64Bytes(b); err != nil {
			return m, malformed("result kind: %v", err)
		}
		left -= 3
		switch resultKind {
		case 1: // error
			if err := need(5); err != nil {
				return m, err
			}
			var e []byte
			if e, b, err = msgp.ReadStringZC(b); err != nil {
				return m, malformed("completion error: %v", err)
			}
			m.Error = string(e)
			left--
		case 2: // void
		case 3: // non-void
			if err := need(5); err != nil {
				return m, err
			}
			rest, err := msgp.Skip(b)
			if err != nil {
				return m, malformed("completion result: %v", err)
			}
			m.Result, b = b[:len(b)-len(rest)], rest
			m.HasResult = true
			left--
		default:
			return m, malformed("invalid completion result kind %d", resultKind)
		}
	case CancelInvocation:
		if err := need(3); err != nil {
			return m, err
		}
		if m.Headers, b, err = readHeaders(b); err != nil {
			return m, err
		}
		if m.InvocationID, b, err = readInvocationID(b, false); err != nil {
			return m, err
		}
		left -= 2
	case Ping:
	case Close:
		if err := need(2); err != nil {
			return m, err
		}
		if msgp.IsNil(b) {
			b = b[1:]
		} else {
			var e []byte
			if e, b, err = msgp.ReadStringZC(b); err != nil {
				return m, malformed("close error: %v", err)
			}
			m.Error = string(e)
		}
		left--
		if n >= 3 {
			if m.AllowReconnect, b, err = msgp.ReadBoolBytes(b); err != nil {
				return m, malformed("allow reconnect: %v", err)
			}
			left--
		}
	case Ack, Sequence:
		if err := need(2); err != nil {
			return m, err
		}
		if m.SequenceID, b, err = msgp.ReadUint64Bytes(b); err != nil {
			return m, malformed("sequence id: %v", err)
		}
		left--
	default:
		return m, nil // unknown type: callers ignore it
	}
	for ; left > 0; left-- {
		if b, err = msgp.Skip(b); err != nil {
			return m, malformed("%s message: %v", m.Kind, err)
		}
	}
	if len(b) != 0 {
		return m, malformed("%d bytes after the message array", len(b))
	}
	return m, nil
}

// readKind reads the message type; integers outside 1..255 are unknown kinds (0).
func readKind(b []byte) (Kind, []byte, error) {
	switch msgp.NextType(b) {
	case msgp.IntType:
		v, o, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			return 0, b, malformed("message type: %v", err)
		}
		return kindOf(v), o, nil
	case msgp.UintType:
		v, o, err := msgp.ReadUint64Bytes(b)
		if err != nil {
			return 0, b, malformed("message type: %v", err)
		}
		if v > 255 {
			return 0, o, nil
		}
		return kindOf(int64(v)), o, nil
	}
	return 0, b, malformed("message type must be an integer, got %s", msgp.NextType(b))
}

// readHeaders reads a map of str → str; an empty map gives nil.
func readHeaders(b []byte) (map[string]string, []byte, error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, b, malformed("headers: %v", err)
	}
	if n == 0 {
		return nil, b, nil
	}
	h := make(map[string]string, min(int(n), len(b)/2))
	for i := uint32(0); i < n; i++ {
		var k, v []byte
		if k, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, b, malformed("header name: %v", err)
		}
		if v, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, b, malformed("header %s: %v", excerpt.Quote(string(k)), err)
		}
		h[string(k)] = string(v)
	}
	return h, b, nil
}

// readInvocationID reads a str invocation id, or nil when nilOK.
func readInvocationID(b []byte, nilOK bool) (string, []byte, error) {
	if nilOK && msgp.IsNil(b) {
		return "", b[1:], nil
	}
	id, o, err := msgp.ReadStringZC(b)
	if err != nil {
		return "", b, malformed("invocation id: %v", err)
	}
	return string(id), o, nil
}

// skipArray validates an array and returns its element count.
func skipArray(b []byte, what string) (int, []byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return 0, b, malformed("%s: %v", what, err)
	}
	for i := uint32(0); i < n; i++ {
		if b, err = msgp.Skip(b); err != nil {
			return 0, b, malformed("%s: element %d: %v", what, i, err)
		}
	}
	return int(n), b, nil
}

func readStringArray(b []byte, what string) ([]string, []byte, error) {
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return nil, b, malformed("%s: %v", what, err)
	}
	if n == 0 {
		return nil, b, nil
	}
	out := make([]string, 0, min(int(n), len(b)))
	for i := uint32(0); i < n; i++ {
		var s []byte
		if s, b, err = msgp.ReadStringZC(b); err != nil {
			return nil, b, malformed("%s: element %d: %v", what, i, err)
		}
		out = append(out, string(s))
	}
	return out, b, nil
}

func (msgpackProtocol) AppendPing(dst []byte) []byte {
	return append(dst, 0x02, 0x91, byte(Ping))
}

func (msgpackProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	dst, start := beginFrame(dst)
	dst = msgp.AppendArrayHeader(dst, 3)
	dst = msgp.AppendInt64(dst, int64(Close))
	if errMsg == "" {
		dst = msgp.AppendNil(dst)
	} else {
		dst = msgp.AppendString(dst, errMsg)
	}
	dst = msgp.AppendBool(dst, allowReconnect)
	return endFrame(dst, start)
}

func (msgpackProtocol) AppendAck(dst []byte, seq uint64) []byte {
	return appendMsgpackSeq(dst, Ack, seq)
}

func (msgpackProtocol) AppendSequence(dst []byte, seq uint64) []byte {
	return appendMsgpackSeq(dst, Sequence, seq)
}

func appendMsgpackSeq(dst []byte, k Kind, seq uint64) []byte {
	dst, start := beginFrame(dst)
	dst = msgp.AppendArrayHeader(dst, 2)
	dst = msgp.AppendInt64(dst, int64(k))
	dst = msgp.AppendUint64(dst, seq)
	return endFrame(dst, start)
}

func (msgpackProtocol) AppendCompletion(dst []byte, invocationID, errMsg string) []byte {
	dst, start := beginFrame(dst)
	if errMsg == "" {
		dst = msgp.AppendArrayHeader(dst, 4)
	} else {
		dst = msgp.AppendArrayHeader(dst, 5)
	}
	dst = msgp.AppendInt64(dst, int64(Completion))
	dst = msgp.AppendMapHeader(dst, 0)
	dst = msgp.AppendString(dst, invocationID)
	if errMsg == "" {
		dst = msgp.AppendInt64(dst, 2) // void
	} else {
		dst = msgp.AppendInt64(dst, 1) // error
		dst = msgp.AppendString(dst, errMsg)
	}
	return endFrame(dst, start)
}
