package hubproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/jsonstring"
	"github.com/tinylib/msgp/msgp"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Payload is the parsed body of a REST send (spec §7.4).
type Payload struct {
	// Invocation is the canonical JSON invocation {"type":1,"target":...,"arguments":[...]}
	// without record separator (JSON bodies); nil for variants.
	Invocation []byte
	// Variants is the MessagePack map protocol name → framed invocation (octet-stream bodies);
	// nil for JSON. Read it with ParseVariants.
	Variants []byte
	// Target is the hub method the clients' handlers are registered under.
	Target string
}

// User-facing texts of the 400 answers to bad send bodies.
var (
	errBodyRequired   = errors.New("Message in request body is required.")
	errTargetRequired = errors.New("Target is required.")
	errTargetType     = errors.New("target must be a string")
	errArgumentsType  = errors.New("arguments must be an array")
	errBodyNotObject  = errors.New("Message in request body must be a JSON object.")
	errInvalidJSON    = errors.New("Message in request body is not valid JSON.")
	// JSON reaches clients in WebSocket text frames, where invalid UTF-8 fails the connection.
	errInvalidUTF8 = errors.New("Message in request body is not valid UTF-8.")
)

// ParsePayload parses the body of a REST send (spec §7.4).
//
// JSON bodies (contentType "" or a media type application/json, text/json or anything ending in
// +json; parameters such as charset are ignored) are an object with "target" (non-empty string)
// and optional "arguments" (array); property names match case-insensitively ("Target" and
// "Arguments" come from the .NET SDK) and other properties are ignored. The result's Invocation is
// `{"type":1,"target":<target>,"arguments":<the caller's array bytes verbatim, or []>}`.
//
// application/octet-stream and application/x-msgpack bodies are a MessagePack map from protocol
// name to a bin blob holding the complete framed invocation for that protocol. Every blob of a
// known protocol ("json", "messagepack") must be exactly one framed Invocation of that protocol,
// and at least one known protocol must be present. The result's Variants is the body and Target
// comes from the first known blob.
//
// Errors carry user-facing 400 texts; an unreadable Content-Type wraps ErrUnsupportedMediaType.
func ParsePayload(contentType string, body []byte) (Payload, error) {
	kind, err := payloadKind(contentType)
	if err != nil {
		return Payload{}, err
	}
	if kind == payloadJSON {
		return parseJSONPayload(body)
	}
	return parseVariantsPayload(body)
}

type payloadType uint8

const (
	payloadJSON payloadType = iota
	payloadVariants
)

func payloadKind(contentType string) (payloadType, error) {
	if strings.TrimSpace(contentType) == "" {
		return payloadJSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, fmt.Errorf("%w Content-Type %s cannot be parsed.", ErrUnsupportedMediaType, excerpt.Quote(contentType))
	}
	switch {
	case mt == "application/json", mt == "text/json", strings.HasSuffix(mt, "+json"):
		return payloadJSON, nil
	case mt == "application/octet-stream", mt == "application/x-msgpack":
		return payloadVariants, nil
	}
	return 0, fmt.Errorf("%w Use application/json or application/octet-stream, not %s.", ErrUnsupportedMediaType, excerpt.Quote(mt))
}

func parseJSONPayload(body []byte) (Payload, error) {
	body = trimSpace(body)
	if len(body) == 0 {
		return Payload{}, errBodyRequired
	}
	if !json.Valid(body) {
		return Payload{}, errInvalidJSON
	}
	if !utf8.Valid(body) {
		return Payload{}, errInvalidUTF8
	}
	if body[0] != '{' {
		return Payload{}, errBodyNotObject
	}
	var target, args []byte
	for e := newElems(body); e.next(); {
		name := string(memberName(e.key))
		switch {
		case strings.EqualFold(name, "target"):
			target = e.val
		case strings.EqualFold(name, "arguments"):
			args = e.val
		}
	}
	if len(target) == 0 || target[0] == 'n' { // absent or null
		return Payload{}, errTargetRequired
	}
	if target[0] != '"' {
		return Payload{}, errTargetType
	}
	name, ok := decodeString(target)
	if !ok {
		return Payload{}, errTargetType
	}
	if name == "" {
		return Payload{}, errTargetRequired
	}
	if len(args) > 0 && args[0] == 'n' { // "arguments": null means none
		args = nil
	}
	if len(args) > 0 && args[0] != '[' {
		return Payload{}, errArgumentsType
	}
	if args == nil {
		args = []byte("[]")
	}
	inv := make([]byte, 0, len(`{"type":1,"target":,"arguments":}`)+len(name)+2+len(args))
	inv = append(inv, `{"type":1,"target":`...)
	inv = jsonstring.AppendHTMLSafe(inv, name)
	inv = append(inv, `,"arguments":`...)
	inv = append(inv, args...)
	inv = append(inv, '}')
	return Payload{Invocation: inv, Target: name}, nil
}

func parseVariantsPayload(body []byte) (Payload, error) {
	if len(body) == 0 {
		return Payload{}, errBodyRequired
	}
	variants, order, err := parseVariants(body)
	if err != nil {
		return Payload{}, err
	}
	target := ""
	for _, name := range order {
		p, known := Lookup(name)
		if !known {
			continue
		}
		blob := variants[name]
		m, err := decodeFramedInvocation(p, blob)
		if err != nil {
			return Payload{}, fmt.Errorf("The %q payload is not a framed invocation: %v", name, err)
		}
		if target == "" {
			target = m.Target
		}
	}
	if target == "" {
		return Payload{}, errors.New("Message in request body must contain a \"json\" or \"messagepack\" payload with a target.")
	}
	return Payload{Variants: body, Target: target}, nil
}

// decodeFramedInvocation checks that blob is exactly one framed Invocation of p with a target.
func decodeFramedInvocation(p Protocol, blob []byte) (Message, error) {
	msg, rest, err := p.Next(blob, 0)
	if errors.Is(err, ErrIncomplete) {
		return Message{}, errors.New("the frame is incomplete")
	}
	if err != nil {
		return Message{}, err
	}
	if len(rest) != 0 {
		return Message{}, errors.New("it holds more than one message")
	}
	if !p.Binary() && !utf8.Valid(msg) {
		return Message{}, errors.New("it is not valid UTF-8")
	}
	m, err := p.Decode(msg)
	if err != nil {
		return Message{}, err
	}
	if m.Kind != Invocation {
		return Message{}, fmt.Errorf("message type is %d, not 1 (invocation)", m.Kind)
	}
	if m.Target == "" {
		return Message{}, errTargetRequired
	}
	return m, nil
}

// ParseVariants returns protocol name → framed blob (sub-slices of body) of a variants map as
// ParsePayload accepted it. The known names "json" and "messagepack" are returned in that
// spelling whatever their case in the body. It checks the map's structure (str keys, bin values,
// at least one entry, no duplicate names, nothing after the map), not the blobs.
func ParseVariants(body []byte) (map[string][]byte, error) {
	m, _, err := parseVariants(body)
	return m, err
}

func parseVariants(body []byte) (map[string][]byte, []string, error) {
	n, b, err := msgp.ReadMapHeaderBytes(body)
	if err != nil {
		return nil, nil, fmt.Errorf("Message in request body must be a MessagePack map: %v", err)
	}
	if n == 0 {
		return nil, nil, errors.New("Message in request body must contain at least one protocol payload.")
	}
	// Each entry takes at least two bytes, so the buffer bounds the allocation.
	size := min(int(n), len(b)/2)
	m := make(map[string][]byte, size)
	order := make([]string, 0, size)
	for i := uint32(0); i < n; i++ {
		var key, blob []byte
		key, b, err = msgp.ReadStringZC(b)
		if err != nil {
			return nil, nil, fmt.Errorf("Protocol name %d in request body must be a MessagePack string: %v", i+1, err)
		}
		name := string(key)
		if p, ok := Lookup(name); ok {
			name = p.Name()
		}
		blob, b, err = msgp.ReadBytesZC(b)
		if err != nil {
			return nil, nil, fmt.Errorf("The %s payload in request body must be MessagePack binary: %v", excerpt.Quote(name), err)
		}
		if _, dup := m[name]; dup {
			return nil, nil, fmt.Errorf("The %s payload appears more than once in request body.", excerpt.Quote(name))
		}
		m[name] = blob
		order = append(order, name)
	}
	if len(b) != 0 {
		return nil, nil, fmt.Errorf("Message in request body has %d unexpected bytes after the MessagePack map.", len(b))
	}
	return m, order, nil
}
