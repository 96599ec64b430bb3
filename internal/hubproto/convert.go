package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"
)

// AppendInvocation converts a canonical JSON invocation into a framed MessagePack invocation
// [1, headers, invocationId|nil, target, [args...]] (headers {} when the JSON has none). Arguments are re-encoded: integers that fit
// int64 or uint64 as msgpack ints, other numbers as float64 (±Inf beyond its range), strings,
// booleans, null as nil, arrays, and objects as maps with string keys in document order.
func (msgpackProtocol) AppendInvocation(dst []byte, jsonInvocation []byte) ([]byte, error) {
	inv := trimSpace(jsonInvocation)
	if !json.Valid(inv) {
		return dst, errors.New("hubproto: invocation is not valid JSON")
	}
	if inv[0] != '{' {
		return dst, errors.New("hubproto: invocation must be a JSON object")
	}
	var id, target, args, headers []byte
	for e := newElems(inv); e.next(); {
		switch string(memberName(e.key)) {
		case "headers":
			headers = e.val
		case "invocationId":
			id = e.val
		case "target":
			target = e.val
		case "arguments":
			args = e.val
		}
	}
	name, ok := decodeString(target)
	if !ok || name == "" {
		return dst, errors.New("hubproto: invocation needs a non-empty string target")
	}
	if args != nil && args[0] != '[' {
		return dst, fmt.Errorf("hubproto: invocation arguments must be an array, not %s", jsonType(args))
	}
	if headers != nil && headers[0] != '{' {
		return dst, fmt.Errorf("hubproto: invocation headers must be an object, not %s", jsonType(headers))
	}

	dst, start := beginFrame(dst)
	dst = msgp.AppendArrayHeader(dst, 5)
	dst = msgp.AppendInt64(dst, int64(Invocation))
	if headers == nil {
		dst = msgp.AppendMapHeader(dst, 0)
	} else {
		var err error
		if dst, err = appendMsgpackValue(dst, headers); err != nil {
			return dst[:start], err
		}
	}
	if id != nil {
		s, ok := decodeString(id)
		if !ok {
			return dst[:start], errors.New("hubproto: invocationId must be a string")
		}
		dst = msgp.AppendString(dst, s)
	} else {
		dst = msgp.AppendNil(dst)
	}
	dst = msgp.AppendString(dst, name)
	if args == nil {
		dst = msgp.AppendArrayHeader(dst, 0)
	} else {
		var err error
		if dst, err = appendMsgpackValue(dst, args); err != nil {
			return dst[:start], err
		}
	}
	return endFrame(dst, start), nil
}

// jsonTokens walks the tokens of valid JSON text in document order. Commas and colons are
// skipped; object keys come out as strings.
type jsonTokens struct {
	b []byte
	i int
}

// next returns the next token, or nil at the end.
func (t *jsonTokens) next() []byte {
	for t.i < len(t.b) {
		switch c := t.b[t.i]; c {
		case ' ', '\t', '\n', '\r', ',', ':':
			t.i++
		case '{', '}', '[', ']':
			t.i++
			return t.b[t.i-1 : t.i]
		default:
			start := t.i
			t.i = skipValue(t.b, t.i)
			return t.b[start:t.i]
		}
	}
	return nil
}

// appendMsgpackValue converts one valid JSON value to MessagePack. MessagePack writes a
// container's size before its elements, so a first pass counts the children of every container
// (in the order they open) and a second pass writes the values; both are linear in the input.
// Numbers are converted from their text, so integers stay exact.
func appendMsgpackValue(dst []byte, value []byte) ([]byte, error) {
	var countsBuf, stackBuf [16]uint32
	counts, stack := countsBuf[:0], stackBuf[:0]
	toks := jsonTokens{b: value}
	for tok := toks.next(); tok != nil; tok = toks.next() {
		switch tok[0] {
		case '}', ']':
			if len(stack) == 0 {
				return dst, errors.New("hubproto: converting arguments: unbalanced JSON")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if len(stack) > 0 {
			counts[stack[len(stack)-1]]++
		}
		if tok[0] == '{' || tok[0] == '[' {
			stack = append(stack, uint32(len(counts)))
			counts = append(counts, 0)
		}
	}
	toks = jsonTokens{b: value}
	next := 0
	for tok := toks.next(); tok != nil; tok = toks.next() {
		switch tok[0] {
		case '[':
			dst = msgp.AppendArrayHeader(dst, counts[next])
			next++
		case '{':
			dst = msgp.AppendMapHeader(dst, counts[next]/2)
			next++
		case '}', ']':
		case '"':
			dst = appendMsgpackString(dst, tok)
		case 't':
			dst = msgp.AppendBool(dst, true)
		case 'f':
			dst = msgp.AppendBool(dst, false)
		case 'n':
			dst = msgp.AppendNil(dst)
		default:
			dst = appendMsgpackNumber(dst, tok)
		}
	}
	return dst, nil
}

// appendMsgpackString appends a JSON string token as a msgpack str. Strings without escapes
// and with valid UTF-8 are copied straight; others are decoded by encoding/json.
func appendMsgpackString(dst []byte, quoted []byte) []byte {
	inner := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return msgp.AppendStringFromBytes(dst, inner)
	}
	s, _ := decodeString(quoted)
	return msgp.AppendString(dst, s)
}

// appendMsgpackNumber appends a JSON number token: integers that fit int64 or uint64 as msgpack
// ints, everything else as float64 (±Inf beyond its range).
func appendMsgpackNumber(dst []byte, tok []byte) []byte {
	if tok[0] == '-' {
		if u, ok := parseUintToken(tok[1:]); ok && u <= 1<<63 {
			return msgp.AppendInt64(dst, int64(-u))
		}
	} else if u, ok := parseUintToken(tok); ok {
		if u <= math.MaxInt64 {
			return msgp.AppendInt64(dst, int64(u))
		}
		return msgp.AppendUint64(dst, u)
	}
	f, _ := strconv.ParseFloat(string(tok), 64)
	return msgp.AppendFloat64(dst, f)
}
