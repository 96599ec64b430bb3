package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboardhq/switchboard/internal/relay"
)

// Relay frames, on the per-relay subjects:
//
//	version  byte (relayV1)
//	type     byte (frameText, frameBinary, frameClose, frameKeepAlive)
//	seq      uvarint, 1, 2, … per direction
//	text, binary: the message's bytes, to the end
//	close: flags byte (closeByClient), code uvarint, reason string
//	keep-alive: flags byte (keepAliveBinary), the frame's bytes to the end
//	  (the protocol-level ping the client's socket sends in place of
//	  WebSocket pings, relay.KeepAliver)
//
// An attach request: version, then kind, hub, protocol, conn id, token,
// user id, relay id, client node as strings. Its reply: version, ok byte
// (1: attached), code uvarint, reason string.
//
// A call (request/reply on sb.<ns>.node.<owner>.call, no relay): version,
// kind, hub, protocol, conn id, token, user id as strings, then the body as
// bytes. Its reply is an attach reply that is not OK, with the answer's
// status and body as code and reason.
//
// A decoder refuses an unknown version, type or flag, a close code past
// 4999, a relay id that is not 32 hex digits, a length past the end or
// bytes after it (FuzzDecodeRelay).
const relayV1 = 1

const (
	frameText      = 1
	frameBinary    = 2
	frameClose     = 3
	frameKeepAlive = 4

	closeByClient   = 1 << 0
	keepAliveBinary = 1 << 0
)

// Close codes and reasons of a relay's own failures.
const (
	reasonOwnerGone   = "the node holding this session is gone; reconnect"
	reasonLost        = "the relay to the node holding this session lost a message; reconnect"
	reasonUnavailable = "the node holding this session could not be reached; reconnect"
	reasonLimit       = "too many relayed connections on this node; try again later"
	reasonSlow        = "slow consumer: outbound queue exceeded its limit"
)

var errRelayEnvelope = errors.New("cluster: bad relay envelope")

// relayFrame is one decoded frame.
type relayFrame struct {
	typ      byte
	seq      uint64
	data     []byte
	binary   bool // of a keep-alive frame
	byClient bool
	code     int
	reason   string
}

func appendRelayFrame(dst []byte, f *relayFrame) []byte {
	dst = append(dst, relayV1, f.typ)
	dst = appendUvarint(dst, f.seq)
	if f.typ == frameClose {
		flags := byte(0)
		if f.byClient {
			flags |= closeByClient
		}
		dst = append(dst, flags)
		dst = appendUvarint(dst, uint64(f.code))
		return appendString(dst, f.reason)
	}
	if f.typ == frameKeepAlive {
		flags := byte(0)
		if f.binary {
			flags |= keepAliveBinary
		}
		dst = append(dst, flags)
	}
	return append(dst, f.data...)
}

func decodeRelayFrame(b []byte) (relayFrame, error) {
	d := decoder{b: b}
	var f relayFrame
	if v := d.byte(); d.err == nil && v != relayV1 {
		return f, fmt.Errorf("%w: version %d", errRelayEnvelope, v)
	}
	f.typ = d.byte()
	f.seq = d.uvarint()
	switch {
	case d.err != nil:
	case f.typ == frameText || f.typ == frameBinary:
		f.data = d.b
		d.b = nil
	case f.typ == frameClose:
		flags := d.byte()
		if flags&^closeByClient != 0 {
			return f, fmt.Errorf("%w: close flags %#x", errRelayEnvelope, flags)
		}
		f.byClient = flags&closeByClient != 0
		code := d.uvarint()
		if code > 4999 {
			return f, fmt.Errorf("%w: close code %d", errRelayEnvelope, code)
		}
		f.code = int(code)
		f.reason = d.string()
	case f.typ == frameKeepAlive:
		flags := d.byte()
		if flags&^keepAliveBinary != 0 {
			return f, fmt.Errorf("%w: keep-alive flags %#x", errRelayEnvelope, flags)
		}
		f.binary = flags&keepAliveBinary != 0
		f.data = d.b
		d.b = nil
	default:
		return f, fmt.Errorf("%w: frame type %d", errRelayEnvelope, f.typ)
	}
	if d.err == nil && len(d.b) > 0 {
		return f, fmt.Errorf("%w: %d bytes past the end", errRelayEnvelope, len(d.b))
	}
	if d.err != nil {
		return f, d.err
	}
	if f.seq == 0 {
		return f, fmt.Errorf("%w: seq 0", errRelayEnvelope)
	}
	return f, nil
}

// attach is an attach request.
type attachReq struct {
	req    relay.Request
	id     string // the relay's id, a subject token
	client string // the node of the client end
}

func appendAttach(dst []byte, a *attachReq) []byte {
	dst = append(dst, relayV1)
	for _, s := range []string{a.req.Kind, a.req.Hub, a.req.Protocol, a.req.ConnID, a.req.Token, a.req.UserID, a.id, a.client} {
		dst = appendString(dst, s)
	}
	return dst
}

func decodeAttach(b []byte) (attachReq, error) {
	d := decoder{b: b}
	var a attachReq
	if v := d.byte(); d.err == nil && v != relayV1 {
		return a, fmt.Errorf("%w: version %d", errRelayEnvelope, v)
	}
	for _, s := range []*string{&a.req.Kind, &a.req.Hub, &a.req.Protocol, &a.req.ConnID, &a.req.Token, &a.req.UserID, &a.id, &a.client} {
		*s = d.string()
	}
	if d.err != nil {
		return a, d.err
	}
	if len(d.b) > 0 {
		return a, fmt.Errorf("%w: %d bytes past the end", errRelayEnvelope, len(d.b))
	}
	if !validRelayID(a.id) || !ValidNodeID(a.client) {
		return a, fmt.Errorf("%w: relay id %q of node %q", errRelayEnvelope, a.id, a.client)
	}
	return a, nil
}

func appendCall(dst []byte, req *relay.Request, body []byte) []byte {
	dst = append(dst, relayV1)
	for _, s := range []string{req.Kind, req.Hub, req.Protocol, req.ConnID, req.Token, req.UserID} {
		dst = appendString(dst, s)
	}
	dst = appendUvarint(dst, uint64(len(body)))
	return append(dst, body...)
}

func decodeCall(b []byte) (relay.Request, []byte, error) {
	d := decoder{b: b}
	var req relay.Request
	if v := d.byte(); d.err == nil && v != relayV1 {
		return req, nil, fmt.Errorf("%w: version %d", errRelayEnvelope, v)
	}
	for _, s := range []*string{&req.Kind, &req.Hub, &req.Protocol, &req.ConnID, &req.Token, &req.UserID} {
		*s = d.string()
	}
	body := d.bytes()
	if d.err != nil {
		return req, nil, d.err
	}
	if len(d.b) > 0 {
		return req, nil, fmt.Errorf("%w: %d bytes past the end", errRelayEnvelope, len(d.b))
	}
	return req, body, nil
}

func appendAttachReply(dst []byte, r *relay.Refusal) []byte {
	if r == nil {
		return append(dst, relayV1, 1, 0, 0)
	}
	dst = append(dst, relayV1, 0)
	dst = appendUvarint(dst, uint64(r.Code))
	return appendString(dst, r.Reason)
}

// decodeAttachReply returns nil for an attached relay, else the refusal.
func decodeAttachReply(b []byte) (*relay.Refusal, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != relayV1 {
		return nil, fmt.Errorf("%w: version %d", errRelayEnvelope, v)
	}
	ok := d.byte()
	code := d.uvarint()
	reason := d.string()
	switch {
	case d.err != nil:
		return nil, d.err
	case len(d.b) > 0:
		return nil, fmt.Errorf("%w: %d bytes past the end", errRelayEnvelope, len(d.b))
	case ok > 1 || code > 4999:
		return nil, fmt.Errorf("%w: reply %d, code %d", errRelayEnvelope, ok, code)
	case ok == 1:
		return nil, nil
	}
	return &relay.Refusal{Code: int(code), Reason: reason}, nil
}

func appendUvarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// validRelayID reports whether id is a relay id: 32 hex digits.
func validRelayID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !strings.ContainsRune("0123456789abcdef", rune(id[i])) {
			return false
		}
	}
	return true
}

func newRelayID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
