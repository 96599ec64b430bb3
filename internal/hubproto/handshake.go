package hubproto

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/jsonstring"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// HandshakeRequest is the client's first record: {"protocol":"json","version":1}␞.
type HandshakeRequest struct {
	Protocol string
	Version  int
}

// ParseHandshake reads the JSON handshake record at the start of buf (a JSON object + 0x1E).
// It returns ErrIncomplete when buf holds no 0x1E yet, and an error wrapping ErrMalformed for
// malformed JSON or a missing or mistyped "protocol" (string) or "version" (integer). rest is what
// follows the separator: a client may batch its first messages behind the handshake. Callers
// bound how many bytes they buffer while waiting for the separator.
func ParseHandshake(buf []byte) (req HandshakeRequest, rest []byte, err error) {
	i := bytes.IndexByte(buf, RecordSeparator)
	if i < 0 {
		return req, nil, ErrIncomplete
	}
	body, rest := trimSpace(buf[:i]), buf[i+1:]
	if len(body) == 0 {
		return req, rest, malformed("handshake: empty record")
	}
	if !json.Valid(body) {
		return req, rest, malformed("handshake: not valid JSON")
	}
	if body[0] != '{' {
		return req, rest, malformed("handshake: a JSON %s, not an object", jsonType(body))
	}
	var protocol, version []byte
	for e := newElems(body); e.next(); {
		switch string(memberName(e.key)) {
		case "protocol":
			protocol = e.val
		case "version":
			version = e.val
		}
	}
	if protocol == nil {
		return req, rest, malformed("handshake: missing required property 'protocol'")
	}
	p, ok := decodeString(protocol)
	if !ok {
		return req, rest, malformed("handshake: expected 'protocol' to be a string, got %s", jsonType(protocol))
	}
	if version == nil {
		return req, rest, malformed("handshake: missing required property 'version'")
	}
	if jsonType(version) != "number" || !isIntegerToken(version) {
		return req, rest, malformed("handshake: expected 'version' to be an integer, got %s", excerpt.Of(string(version)))
	}
	v, err := strconv.ParseInt(string(version), 10, 32)
	if err != nil || v < math.MinInt32 || v > math.MaxInt32 {
		return req, rest, malformed("handshake: 'version' %s is out of range", excerpt.Of(string(version)))
	}
	return HandshakeRequest{Protocol: p, Version: int(v)}, rest, nil
}

// AppendHandshakeResponse appends `{}` + 0x1E, or `{"error":"<msg>"}` + 0x1E when errMsg != "".
func AppendHandshakeResponse(dst []byte, errMsg string) []byte {
	if errMsg == "" {
		return append(dst, '{', '}', RecordSeparator)
	}
	dst = append(dst, `{"error":`...)
	dst = jsonstring.AppendHTMLSafe(dst, errMsg)
	return append(dst, '}', RecordSeparator)
}
