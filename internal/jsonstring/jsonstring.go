// Package jsonstring appends Go strings as JSON string literals without
// reflection or allocation, for the encoders that build protocol frames by
// hand (the Web PubSub JSON subprotocols, the SignalR hub protocol).
package jsonstring

import (
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// Append appends s as a JSON string: '"' and '\' escaped, control characters
// as \n, \r, \t or \u00XX, U+2028 and U+2029 escaped (JavaScript line
// terminators), invalid UTF-8 replaced by U+FFFD.
func Append(dst []byte, s string) []byte { return appendString(dst, s, false) }

// AppendBytes is Append of text held in a byte slice, without copying it to a string first
// (a message's payload is encoded for every message sent).
func AppendBytes(dst, b []byte) []byte {
	// appendString only reads s during the call and keeps none of it, so a view of b will do.
	return appendString(dst, unsafe.String(unsafe.SliceData(b), len(b)), false)
}

// AppendHTMLSafe is Append that also escapes '<', '>' and '&' and writes \b
// and \f, byte for byte as encoding/json.Marshal does.
func AppendHTMLSafe(dst []byte, s string) []byte { return appendString(dst, s, true) }

func appendString(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && (!html || (c != '<' && c != '>' && c != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case html && c == '\b':
				dst = append(dst, '\\', 'b')
			case html && c == '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
