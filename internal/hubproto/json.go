package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/jsonstring"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// jsonProtocol is the "json" hub protocol: one JSON object per message, each followed by 0x1E.
// Property names are case-sensitive.
type jsonProtocol struct{}

func (jsonProtocol) Name() string { return "json" }
func (jsonProtocol) Binary() bool { return false }

func (jsonProtocol) Next(buf []byte, maxMessage int) (msg, rest []byte, err error) {
	i := bytes.IndexByte(buf, RecordSeparator)
	if i < 0 {
		if maxMessage > 0 && len(buf) > maxMessage {
			return nil, nil, fmt.Errorf("%w: more than %d bytes without a record separator", ErrTooLarge, maxMessage)
		}
		return nil, nil, ErrIncomplete
	}
	if maxMessage > 0 && i > maxMessage {
		return nil, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, i, maxMessage)
	}
	return buf[:i], buf[i+1:], nil
}

// jsonFields holds the raw values of the properties a hub message may carry; nil = absent.
type jsonFields struct {
	typ, invocationID, target, arguments, streamIDs, headers []byte
	item, result, errorMsg, allowReconnect, sequenceID       []byte
}

func (jsonProtocol) Decode(msg []byte) (Message, error) {
	m := Message{Raw: msg}
	body := trimSpace(msg)
	if len(body) == 0 {
		return m, malformed("empty message")
	}
	if !json.Valid(body) {
		return m, malformed("message is not valid JSON")
	}
	if body[0] != '{' {
		return m, malformed("message is a JSON %s, not an object", jsonType(body))
	}
	var f jsonFields
	for e := newElems(body); e.next(); {
		switch string(memberName(e.key)) {
		case "type":
			f.typ = e.val
		case "invocationId":
			f.invocationID = e.val
		case "target":
			f.target = e.val
		case "arguments":
			f.arguments = e.val
		case "streamIds":
			f.streamIDs = e.val
		case "headers":
			f.headers = e.val
		case "item":
			f.item = e.val
		case "result":
			f.result = e.val
		case "error":
			f.errorMsg = e.val
		case "allowReconnect":
			f.allowReconnect = e.val
		case "sequenceId":
			f.sequenceID = e.val
		}
	}
	if f.typ == nil {
		return m, malformed("missing required property 'type'")
	}
	if jsonType(f.typ) != "number" || !isIntegerToken(f.typ) {
		return m, malformed("expected 'type' to be an integer, got %s", excerpt.Of(string(f.typ)))
	}
	v, err := strconv.ParseInt(string(f.typ), 10, 64)
	if err != nil {
		m.Kind = 0 // an integer too large for int64 is an unknown type
	} else {
		m.Kind = kindOf(v)
	}
	switch m.Kind {
	case Invocation, StreamInvocation, StreamItem, Completion, CancelInvocation, Ping, Close, Ack, Sequence:
	default:
		return m, nil // unknown type: callers ignore it
	}
	if f.headers != nil {
		if m.Headers, err = jsonHeaders(f.headers); err != nil {
			return m, err
		}
	}
	switch m.Kind {
	case Invocation, StreamInvocation:
		if err := jsonInvocationID(&m, f.invocationID, m.Kind == StreamInvocation); err != nil {
			return m, err
		}
		if m.Target, err = jsonRequiredString("target", f.target); err != nil {
			return m, err
		}
		if f.arguments == nil {
			return m, malformed("missing required property 'arguments'")
		}
		if f.arguments[0] != '[' {
			return m, malformed("expected 'arguments' to be an array, got %s", jsonType(f.arguments))
		}
		for e := newElems(f.arguments); e.next(); {
			m.Arguments++
		}
		if f.streamIDs != nil {
			if m.StreamIDs, err = jsonStringArray("streamIds", f.streamIDs); err != nil {
				return m, err
			}
		}
	case StreamItem:
		if err := jsonInvocationID(&m, f.invocationID, true); err != nil {
			return m, err
		}
		if f.item == nil {
			return m, malformed("missing required property 'item'")
		}
	case Completion:
		if err := jsonInvocationID(&m, f.invocationID, true); err != nil {
			return m, err
		}
		if f.result != nil && f.errorMsg != nil {
			return m, malformed("the 'error' and 'result' properties are mutually exclusive")
		}
		m.HasResult = f.result != nil
		m.Result = f.result
		if f.errorMsg != nil {
			if m.Error, err = jsonRequiredString("error", f.errorMsg); err != nil {
				return m, err
			}
		}
	case CancelInvocation:
		if err := jsonInvocationID(&m, f.invocationID, true); err != nil {
			return m, err
		}
	case Close:
		if f.errorMsg != nil {
			if m.Error, err = jsonRequiredString("error", f.errorMsg); err != nil {
				return m, err
			}
		}
		if f.allowReconnect != nil {
			switch string(f.allowReconnect) {
			case "true":
				m.AllowReconnect = true
			case "false":
			default:
				return m, malformed("expected 'allowReconnect' to be a boolean, got %s", jsonType(f.allowReconnect))
			}
		}
	case Ack, Sequence:
		if f.sequenceID == nil {
			return m, malformed("missing required property 'sequenceId'")
		}
		seq, ok := parseUintToken(f.sequenceID)
		if !ok {
			return m, malformed("expected 'sequenceId' to be a non-negative integer, got %s", excerpt.Of(string(f.sequenceID)))
		}
		m.SequenceID = seq
	}
	return m, nil
}

// jsonInvocationID reads invocationId into m: a string when present, required when required.
func jsonInvocationID(m *Message, raw []byte, required bool) error {
	if raw == nil {
		if required {
			return malformed("missing required property 'invocationId'")
		}
		return nil
	}
	id, err := jsonRequiredString("invocationId", raw)
	m.InvocationID = id
	return err
}

func jsonRequiredString(name string, raw []byte) (string, error) {
	if raw == nil {
		return "", malformed("missing required property '%s'", name)
	}
	s, ok := decodeString(raw)
	if !ok {
		return "", malformed("expected '%s' to be a string, got %s", name, jsonType(raw))
	}
	return s, nil
}

func jsonStringArray(name string, raw []byte) ([]string, error) {
	if raw[0] != '[' {
		return nil, malformed("expected '%s' to be an array of strings, got %s", name, jsonType(raw))
	}
	var out []string
	for e := newElems(raw); e.next(); {
		s, ok := decodeString(e.val)
		if !ok {
			return nil, malformed("expected '%s' to be an array of strings, found %s", name, jsonType(e.val))
		}
		out = append(out, s)
	}
	return out, nil
}

func jsonHeaders(raw []byte) (map[string]string, error) {
	if raw[0] != '{' {
		return nil, malformed("expected 'headers' to be an object, got %s", jsonType(raw))
	}
	var h map[string]string
	for e := newElems(raw); e.next(); {
		k, _ := decodeString(e.key)
		v, ok := decodeString(e.val)
		if !ok {
			return nil, malformed("expected header %q to be a string, got %s", k, jsonType(e.val))
		}
		if h == nil {
			h = make(map[string]string)
		}
		h[k] = v
	}
	return h, nil
}

func (jsonProtocol) AppendPing(dst []byte) []byte {
	return append(dst, `{"type":6}`+"\x1e"...)
}

func (jsonProtocol) AppendClose(dst []byte, errMsg string, allowReconnect bool) []byte {
	dst = append(dst, `{"type":7`...)
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = jsonstring.AppendHTMLSafe(dst, errMsg)
	}
	if allowReconnect {
		dst = append(dst, `,"allowReconnect":true`...)
	}
	return append(dst, '}', RecordSeparator)
}

func (jsonProtocol) AppendAck(dst []byte, seq uint64) []byte {
	return appendJSONSeq(dst, Ack, seq)
}

func (jsonProtocol) AppendSequence(dst []byte, seq uint64) []byte {
	return appendJSONSeq(dst, Sequence, seq)
}

func appendJSONSeq(dst []byte, k Kind, seq uint64) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendUint(dst, uint64(k), 10)
	dst = append(dst, `,"sequenceId":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}', RecordSeparator)
}

func (jsonProtocol) AppendCompletion(dst []byte, invocationID, errMsg string) []byte {
	dst = append(dst, `{"type":3,"invocationId":`...)
	dst = jsonstring.AppendHTMLSafe(dst, invocationID)
	if errMsg != "" {
		dst = append(dst, `,"error":`...)
		dst = jsonstring.AppendHTMLSafe(dst, errMsg)
	}
	return append(dst, '}', RecordSeparator)
}

// AppendInvocation appends the canonical invocation verbatim plus 0x1E. It checks only what
// protects the framing (an object that holds no separator); ParsePayload validated the rest.
func (jsonProtocol) AppendInvocation(dst []byte, jsonInvocation []byte) ([]byte, error) {
	inv := trimSpace(jsonInvocation)
	if len(inv) == 0 || inv[0] != '{' || inv[len(inv)-1] != '}' {
		return dst, errors.New("hubproto: json invocation must be a JSON object")
	}
	if bytes.IndexByte(inv, RecordSeparator) >= 0 {
		return dst, errors.New("hubproto: json invocation contains a record separator")
	}
	dst = append(dst, inv...)
	return append(dst, RecordSeparator), nil
}

// WithHeaders returns a canonical JSON invocation (as ParsePayload makes it,
// without headers) with a "headers" member holding the (name, value) pairs, in
// order. Both protocols' AppendInvocation carry them to the client; the
// official clients ignore headers they do not know.
func WithHeaders(jsonInvocation []byte, headers [][2]string) []byte {
	inv := trimSpace(jsonInvocation)
	if len(headers) == 0 || len(inv) < 2 || inv[0] != '{' {
		return jsonInvocation
	}
	out := make([]byte, 0, len(inv)+32*len(headers))
	out = append(out, `{"headers":{`...)
	for i, h := range headers {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonstring.AppendHTMLSafe(out, h[0])
		out = append(out, ':')
		out = jsonstring.AppendHTMLSafe(out, h[1])
	}
	out = append(out, '}')
	if rest := trimSpace(inv[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, inv[1:]...)
}
