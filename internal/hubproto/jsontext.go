package hubproto

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The helpers in this file walk JSON text that json.Valid has already accepted. They find value
// boundaries without building values, so decoding a message costs one validation pass plus the
// fields that are actually read.

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trimSpace removes JSON whitespace around b.
func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch c := b[i]; {
			case c == ',' || c == '}' || c == ']' || isSpace(c):
				return i
			}
			i++
		}
		return i
	}
}

// elems iterates over the members of a valid JSON object or the elements of a valid JSON array.
// For arrays key is nil.
type elems struct {
	b        []byte
	i        int
	object   bool
	key, val []byte
}

// newElems starts an iteration over container, which must be trimmed valid JSON starting with
// '{' or '['.
func newElems(container []byte) elems {
	return elems{b: container, i: 1, object: len(container) > 0 && container[0] == '{'}
}

func (e *elems) next() bool {
	i := skipSpace(e.b, e.i)
	if i < len(e.b) && e.b[i] == ',' {
		i = skipSpace(e.b, i+1)
	}
	if i >= len(e.b) || e.b[i] == '}' || e.b[i] == ']' {
		e.i = len(e.b)
		return false
	}
	if e.object {
		end := skipString(e.b, i)
		e.key = e.b[i:end]
		i = skipSpace(e.b, end)
		if i < len(e.b) && e.b[i] == ':' {
			i = skipSpace(e.b, i+1)
		}
	}
	end := skipValue(e.b, i)
	e.val = e.b[i:end]
	e.i = end
	return true
}

// memberName returns the name of a quoted object key; it copies only when the key has escapes.
func memberName(quoted []byte) []byte {
	if len(quoted) < 2 {
		return nil
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return quoted[1 : len(quoted)-1]
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return nil
	}
	return []byte(s)
}

// decodeString decodes a valid JSON string token. Plain ASCII strings skip encoding/json.
func decodeString(quoted []byte) (string, bool) {
	if len(quoted) < 2 || quoted[0] != '"' {
		return "", false
	}
	inner := quoted[1 : len(quoted)-1]
	plain := true
	for _, c := range inner {
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return "", false
	}
	return s, true
}

// parseUintToken parses a JSON number token holding a non-negative integer without sign,
// fraction or exponent.
func parseUintToken(tok []byte) (uint64, bool) {
	if len(tok) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// isIntegerToken reports whether tok is a JSON integer (optional minus, digits only).
func isIntegerToken(tok []byte) bool {
	if len(tok) > 0 && tok[0] == '-' {
		tok = tok[1:]
	}
	if len(tok) == 0 {
		return false
	}
	for _, c := range tok {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jsonType names the JSON type of a valid value, for error messages.
func jsonType(v []byte) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}
