package hubproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/jsonstring"
	"github.com/tinylib/msgp/msgp"
)

// This file is what server-to-client calls need (spec §7.7): invocations that wait for the
// client's result, the client's result as JSON, and server-to-client stream items.

// WithInvocationID returns a canonical JSON invocation (as ParsePayload makes it) with an
// "invocationId" member, so that the client answers it with a Completion. Both protocols'
// AppendInvocation carry it.
func WithInvocationID(jsonInvocation []byte, id string) []byte {
	inv := trimSpace(jsonInvocation)
	if len(inv) < 2 || inv[0] != '{' {
		return jsonInvocation
	}
	out := make([]byte, 0, len(inv)+len(id)+20)
	out = append(out, `{"invocationId":`...)
	out = jsonstring.AppendHTMLSafe(out, id)
	if rest := trimSpace(inv[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, inv[1:]...)
}

var errItemNotJSON = errors.New("hubproto: stream item is not a JSON value")

func (jsonProtocol) AppendStreamItem(dst []byte, invocationID string, jsonItem []byte) ([]byte, error) {
	item := trimSpace(jsonItem)
	if len(item) == 0 || !json.Valid(item) {
		return dst, errItemNotJSON
	}
	// Valid JSON holds no raw control character, so no record separator either.
	dst = append(dst, `{"type":2,"invocationId":`...)
	dst = jsonstring.AppendHTMLSafe(dst, invocationID)
	dst = append(dst, `,"item":`...)
	dst = append(dst, item...)
	return append(dst, '}', RecordSeparator), nil
}

func (msgpackProtocol) AppendStreamItem(dst []byte, invocationID string, jsonItem []byte) ([]byte, error) {
	item := trimSpace(jsonItem)
	if len(item) == 0 || !json.Valid(item) {
		return dst, errItemNotJSON
	}
	dst, start := beginFrame(dst)
	dst = msgp.AppendArrayHeader(dst, 4)
	dst = msgp.AppendInt64(dst, int64(StreamItem))
	dst = msgp.AppendMapHeader(dst, 0)
	dst = msgp.AppendString(dst, invocationID)
	dst, err := appendMsgpackValue(dst, item)
	if err != nil {
		return dst[:start], err
	}
	return endFrame(dst, start), nil
}

// ResultJSON appends the result verbatim: the decoder checked that the message is valid JSON.
func (jsonProtocol) ResultJSON(dst []byte, result []byte) ([]byte, error) {
	r := trimSpace(result)
	if len(r) == 0 {
		return dst, malformed("empty completion result")
	}
	return append(dst, r...), nil
}

func (msgpackProtocol) ResultJSON(dst []byte, result []byte) ([]byte, error) {
	return AppendJSONFromMsgpack(dst, result)
}

// maxMsgpackDepth bounds the nesting AppendJSONFromMsgpack follows, so that a hostile value
// cannot make it recurse a million levels deep.
const maxMsgpackDepth = 100

// AppendJSONFromMsgpack converts exactly one MessagePack value (and nothing after it) to JSON
// text:
//
//   - nil → null, booleans, integers exactly (int64 and uint64), floats in their shortest form
//     (NaN and ±Inf, which JSON cannot hold, become null);
//   - str → a JSON string (invalid UTF-8 becomes U+FFFD), bin → a base64 string (as .NET's JSON
//     writes byte[]);
//   - arrays, and maps as objects in wire order: str keys as they are, other keys as their
//     JSON text in a string (a map with key 1 becomes {"1":…});
//   - the timestamp extension (-1) → an RFC 3339 string in UTC with nanoseconds; any other
//     extension → {"extType":n,"data":"<base64>"}.
//
// Errors wrap ErrMalformed.
func AppendJSONFromMsgpack(dst []byte, value []byte) ([]byte, error) {
	out, rest, err := appendJSONValue(dst, value, 0)
	if err != nil {
		return dst, err
	}
	if len(rest) != 0 {
		return dst, malformed("%d bytes after the MessagePack value", len(rest))
	}
	return out, nil
}

func appendJSONValue(dst, b []byte, depth int) ([]byte, []byte, error) {
	if depth > maxMsgpackDepth {
		return dst, b, malformed("value nested deeper than %d levels", maxMsgpackDepth)
	}
	var err error
	switch t := msgp.NextType(b); t {
	case msgp.NilType:
		if b, err = msgp.ReadNilBytes(b); err != nil {
			return dst, b, malformed("nil: %v", err)
		}
		return append(dst, "null"...), b, nil
	case msgp.BoolType:
		var v bool
		if v, b, err = msgp.ReadBoolBytes(b); err != nil {
			return dst, b, malformed("bool: %v", err)
		}
		return strconv.AppendBool(dst, v), b, nil
	case msgp.IntType:
		var v int64
		if v, b, err = msgp.ReadInt64Bytes(b); err != nil {
			return dst, b, malformed("int: %v", err)
		}
		return strconv.AppendInt(dst, v, 10), b, nil
	case msgp.UintType:
		var v uint64
		if v, b, err = msgp.ReadUint64Bytes(b); err != nil {
			return dst, b, malformed("uint: %v", err)
		}
		return strconv.AppendUint(dst, v, 10), b, nil
	case msgp.Float32Type:
		var v float32
		if v, b, err = msgp.ReadFloat32Bytes(b); err != nil {
			return dst, b, malformed("float32: %v", err)
		}
		return appendJSONFloat(dst, float64(v), 32), b, nil
	case msgp.Float64Type:
		var v float64
		if v, b, err = msgp.ReadFloat64Bytes(b); err != nil {
			return dst, b, malformed("float64: %v", err)
		}
		return appendJSONFloat(dst, v, 64), b, nil
	case msgp.StrType:
		var s []byte
		if s, b, err = msgp.ReadStringZC(b); err != nil {
			return dst, b, malformed("str: %v", err)
		}
		return appendJSONString(dst, s), b, nil
	case msgp.BinType:
		var v []byte
		if v, b, err = msgp.ReadBytesZC(b); err != nil {
			return dst, b, malformed("bin: %v", err)
		}
		return appendBase64String(dst, v), b, nil
	case msgp.ArrayType:
		var n uint32
		if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return dst, b, malformed("array: %v", err)
		}
		dst = append(dst, '[')
		for i := uint32(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, b, err = appendJSONValue(dst, b, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, ']'), b, nil
	case msgp.MapType:
		var n uint32
		if n, b, err = msgp.ReadMapHeaderBytes(b); err != nil {
			return dst, b, malformed("map: %v", err)
		}
		dst = append(dst, '{')
		for i := uint32(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, b, err = appendJSONKey(dst, b, depth+1); err != nil {
				return dst, b, err
			}
			dst = append(dst, ':')
			if dst, b, err = appendJSONValue(dst, b, depth+1); err != nil {
				return dst, b, err
			}
		}
		return append(dst, '}'), b, nil
	case msgp.TimeType:
		var v time.Time
		if v, b, err = msgp.ReadTimeBytes(b); err != nil {
			return dst, b, malformed("timestamp: %v", err)
		}
		dst = append(dst, '"')
		dst = v.UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), b, nil
	case msgp.ExtensionType, msgp.Complex64Type, msgp.Complex128Type:
		ext := msgp.RawExtension{Type: extType(b)}
		if b, err = msgp.ReadExtensionBytes(b, &ext); err != nil {
			return dst, b, malformed("extension: %v", err)
		}
		dst = append(dst, `{"extType":`...)
		dst = strconv.AppendInt(dst, int64(ext.Type), 10)
		dst = append(dst, `,"data":`...)
		dst = appendBase64String(dst, ext.Data)
		return append(dst, '}'), b, nil
	default:
		if len(b) == 0 {
			return dst, b, malformed("MessagePack value is missing")
		}
		return dst, b, malformed("invalid MessagePack prefix 0x%02x", b[0])
	}
}

// appendJSONKey appends a map key as a JSON string: a str as it is, anything else as its JSON
// text.
func appendJSONKey(dst, b []byte, depth int) ([]byte, []byte, error) {
	if msgp.NextType(b) == msgp.StrType {
		s, rest, err := msgp.ReadStringZC(b)
		if err != nil {
			return dst, b, malformed("map key: %v", err)
		}
		return appendJSONString(dst, s), rest, nil
	}
	text, rest, err := appendJSONValue(nil, b, depth)
	if err != nil {
		return dst, b, err
	}
	if len(text) > 0 && text[0] == '"' { // bin and timestamp keys are strings already
		return append(dst, text...), rest, nil
	}
	return jsonstring.Append(dst, string(text)), rest, nil
}

// extType reads the type byte of the extension at b (0 when b is too short: the read that
// follows reports it).
func extType(b []byte) int8 {
	if len(b) < 3 {
		return 0
	}
	switch b[0] {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return int8(b[1])
	case 0xc7: // ext 8
		return int8(b[2])
	case 0xc8: // ext 16
		if len(b) > 3 {
			return int8(b[3])
		}
	case 0xc9: // ext 32
		if len(b) > 5 {
			return int8(b[5])
		}
	}
	return 0
}

func appendJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// appendJSONString appends s as a JSON string, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(dst, s []byte) []byte {
	if !utf8.Valid(s) {
		s = bytes.ToValidUTF8(s, []byte("\uFFFD"))
	}
	return jsonstring.Append(dst, string(s))
}

func appendBase64String(dst, v []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, v)
	return append(dst, '"')
}
