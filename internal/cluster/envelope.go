package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// The envelope is how a core.Op crosses NATS. It is binary, so that a payload
// is carried as its bytes (no base64) and a send costs one pass over it:
//
//	version   byte (envelopeV1)
//	op kind   byte (core.OpKind)
//	target    byte (core.TargetKind)
//	flags     byte (flagMessage: a message follows the strings)
//	origin, hub, target name, skip conn, reason, filter   string each
//	excluded  uvarint count, then that many strings
//	message   (when flagMessage)
//	  type, from     byte each (core.DataType, core.Origin)
//	  group, from user id, epoch   string each
//	  expires   varint, Unix nanoseconds; 0: never
//	  offset    uvarint
//	  data      bytes
//	stream    (when flagStream, with flagMessage: a group stream's fragment)
//	  id        string
//	  seq       uvarint
//	  end       byte (0 or 1)
//	  error     byte (0: none, 1: name, message, code strings follow)
//
// An OpPresence (member notifications) is an op of kind core.OpPresence to
// a group, whose reason field carries the user id, with flag flagPresent
// when the origin now has the user in the group; origin is the node whose
// change it is.
//
// An OpGroupState (group state) is an op of kind core.OpGroupState to a
// group with a message of type core.GroupState whose epoch field carries
// the conn id (Message.StateConn) and offset field the change's time
// (Message.StateAt); empty data is a cleared entry.
//
// A marker (see order.go) is an envelope of its own on the same subjects:
//
//	version   byte (envelopeV1)
//	op kind, target   byte each, 0
//	flags     byte (flagMarker, alone)
//	origin    string
//	seq       uvarint
//
// A string or bytes field is a uvarint length and that many bytes. The filter
// travels as its source text and is parsed again by the receiver, so that
// every node matches with its own odata code. A receiver refuses a version it
// does not know: a rolling upgrade that changes the envelope adds a version
// and keeps decoding the old one for a release.
const envelopeV1 = 1

const (
	flagMessage = 1 << 0
	flagMarker  = 1 << 1
	flagPresent = 1 << 2
	// flagStream marks a message of a group stream. A node of an older
	// release refuses the envelope (unknown flag): stream fragments do not
	// reach its members during a rolling upgrade.
	flagStream = 1 << 3
)

// errEnvelope is the cause of every decoding failure.
var errEnvelope = errors.New("cluster: bad op envelope")

// encodeOp appends op's envelope, sent by node origin, to dst.
func encodeOp(dst []byte, origin string, op *core.Op) []byte {
	flags := byte(0)
	if op.Message != nil {
		flags |= flagMessage
		if op.Message.Stream != nil {
			flags |= flagStream
		}
	}
	reason := op.Reason
	if op.Kind == core.OpPresence {
		reason = op.User
		if op.Present {
			flags |= flagPresent
		}
	}
	dst = append(dst, envelopeV1, byte(op.Kind), byte(op.Target.Kind), flags)
	filter := ""
	if op.Target.Filter != nil {
		filter = op.Target.Filter.String()
	}
	for _, s := range [...]string{origin, op.Hub, op.Target.Name, op.SkipConn, reason, filter} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(op.Target.Excluded)))
	for _, s := range op.Target.Excluded {
		dst = appendString(dst, s)
	}
	if m := op.Message; m != nil {
		epoch, offset := m.Epoch, m.Offset
		if m.Type == core.GroupState {
			epoch, offset = m.StateConn, uint64(max(m.StateAt, 0))
		}
		dst = append(dst, byte(m.Type), byte(m.From))
		dst = appendString(dst, m.Group)
		dst = appendString(dst, m.FromUserID)
		dst = appendString(dst, epoch)
		var exp int64
		if !m.Expires.IsZero() {
			exp = m.Expires.UnixNano()
		}
		dst = binary.AppendVarint(dst, exp)
		dst = binary.AppendUvarint(dst, offset)
		dst = binary.AppendUvarint(dst, uint64(len(m.Data)))
		dst = append(dst, m.Data...)
		if st := m.Stream; st != nil {
			dst = appendString(dst, st.ID)
			dst = binary.AppendUvarint(dst, st.Seq)
			end := byte(0)
			if st.End {
				end = 1
			}
			dst = append(dst, end)
			if st.Error == nil {
				dst = append(dst, 0)
			} else {
				dst = append(dst, 1)
				dst = appendString(dst, st.Error.Name)
				dst = appendString(dst, st.Error.Message)
				dst = appendString(dst, st.Error.Code)
			}
		}
	}
	return dst
}

// encodeMarker appends the envelope of origin's marker seq to dst.
func encodeMarker(dst []byte, origin string, seq uint64) []byte {
	dst = append(dst, envelopeV1, 0, 0, flagMarker)
	dst = appendString(dst, origin)
	return binary.AppendUvarint(dst, seq)
}

// isMarker reports whether b is a marker's envelope (decodeMarker decodes
// it; decodeOp refuses it).
func isMarker(b []byte) bool { return len(b) >= 4 && b[0] == envelopeV1 && b[3] == flagMarker }

// decodeMarker decodes a marker's envelope.
func decodeMarker(b []byte) (origin string, seq uint64, err error) {
	d := decoder{b: b}
	version, kind, target, flags := d.byte(), d.byte(), d.byte(), d.byte()
	origin, seq = d.string(), d.uvarint()
	switch {
	case d.err != nil:
		return "", 0, d.err
	case version != envelopeV1 || kind != 0 || target != 0 || flags != flagMarker:
		return "", 0, fmt.Errorf("%w: not a marker", errEnvelope)
	case len(d.b) != 0:
		return "", 0, fmt.Errorf("%w: %d bytes after the marker", errEnvelope, len(d.b))
	}
	return origin, seq, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeOp decodes an envelope; it returns the op and the id of the node
// that published it. The message's Data aliases b: the caller hands over b.
func decodeOp(b []byte) (op *core.Op, origin string, err error) {
	d := decoder{b: b}
	version, kind, target, flags := d.byte(), d.byte(), d.byte(), d.byte()
	if d.err != nil {
		return nil, "", d.err
	}
	if version != envelopeV1 {
		return nil, "", fmt.Errorf("%w: version %d", errEnvelope, version)
	}
	if kind > byte(core.OpGroupState) {
		return nil, "", fmt.Errorf("%w: op kind %d", errEnvelope, kind)
	}
	if target > byte(core.ToConn) {
		return nil, "", fmt.Errorf("%w: target kind %d", errEnvelope, target)
	}
	if flags&^(flagMessage|flagPresent|flagStream) != 0 || (flags&flagPresent != 0 && kind != byte(core.OpPresence)) || flags&flagStream != 0 && flags&flagMessage == 0 {
		return nil, "", fmt.Errorf("%w: flags %#x", errEnvelope, flags)
	}
	op = &core.Op{Kind: core.OpKind(kind), Target: core.Target{Kind: core.TargetKind(target)}}
	origin = d.string()
	op.Hub = d.string()
	op.Target.Name = d.string()
	op.SkipConn = d.string()
	op.Reason = d.string()
	filter := d.string()
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) { // each entry takes at least its length byte
		return nil, "", fmt.Errorf("%w: %d excluded ids in %d bytes", errEnvelope, n, len(d.b))
	}
	if n > 0 {
		op.Target.Excluded = make([]string, 0, n)
		for range n {
			op.Target.Excluded = append(op.Target.Excluded, d.string())
		}
	}
	if flags&flagMessage != 0 {
		m := &core.Message{}
		typ, from := d.byte(), d.byte()
		if d.err == nil && ((typ > byte(core.Protobuf) && typ != byte(core.GroupState)) || from > byte(core.FromGroup) ||
			(typ == byte(core.GroupState)) != (kind == byte(core.OpGroupState))) {
			return nil, "", fmt.Errorf("%w: message type %d from %d", errEnvelope, typ, from)
		}
		m.Type, m.From = core.DataType(typ), core.Origin(from)
		m.Group = d.string()
		m.FromUserID = d.string()
		m.Epoch = d.string()
		if exp := d.varint(); exp != 0 {
			m.Expires = time.Unix(0, exp)
		}
		m.Offset = d.uvarint()
		m.Data = d.bytes()
		if flags&flagStream != 0 {
			st := &core.Stream{ID: d.string(), Seq: d.uvarint()}
			end, hasErr := d.byte(), d.byte()
			if d.err == nil && (end > 1 || hasErr > 1) {
				return nil, "", fmt.Errorf("%w: stream end %d error %d", errEnvelope, end, hasErr)
			}
			st.End = end == 1
			if hasErr == 1 {
				st.Error = &core.StreamError{Name: d.string(), Message: d.string(), Code: d.string()}
			}
			m.Stream = st
		}
		op.Message = m
	}
	if d.err != nil {
		return nil, "", d.err
	}
	if len(d.b) != 0 {
		return nil, "", fmt.Errorf("%w: %d bytes after the op", errEnvelope, len(d.b))
	}
	if (op.Kind == core.OpSend || op.Kind == core.OpGroupState) != (op.Message != nil) {
		return nil, "", fmt.Errorf("%w: a send carries a message, a close none", errEnvelope)
	}
	if op.Kind == core.OpGroupState {
		m := op.Message
		if op.Target.Kind != core.ToGroup || m.Group != op.Target.Name || m.Epoch == "" || m.Offset > math.MaxInt64 || filter != "" {
			return nil, "", fmt.Errorf("%w: a group state change names its group and conn", errEnvelope)
		}
		m.StateConn, m.StateAt, m.Epoch, m.Offset = m.Epoch, int64(m.Offset), "", 0
		if len(m.Data) == 0 {
			m.Data = nil
		}
	}
	if op.Kind == core.OpPresence {
		if op.Target.Kind != core.ToGroup || op.Reason == "" || filter != "" || len(op.Target.Excluded) > 0 || op.SkipConn != "" {
			return nil, "", fmt.Errorf("%w: a presence change names a group and a user only", errEnvelope)
		}
		op.User, op.Reason, op.Present, op.Origin = op.Reason, "", flags&flagPresent != 0, origin
	}
	if filter != "" {
		f, err := odata.Parse(filter)
		if err != nil {
			return nil, "", fmt.Errorf("%w: filter: %w", errEnvelope, err)
		}
		op.Target.Filter = f
	}
	return op, origin, nil
}

// decoder reads envelope fields; the first failure sticks in err and every
// later read returns a zero value.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated %s", errEnvelope, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("header")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("field")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }
