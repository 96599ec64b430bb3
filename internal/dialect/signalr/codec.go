package signalr

import (
	"bytes"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// Codec keys, distinct from the Web PubSub ones (they name the encoding, so a
// stateful and a plain conn of one protocol share it).
const (
	keyJSON        = 4
	keyMessagePack = 5
)

// Invocation headers of group messages from groups that keep history: the
// message's offset in the group's stream and the stream's epoch.
const (
	HeaderOffset = "offset"
	HeaderEpoch  = "epoch"
)

// codec encodes core messages as hub-protocol frames for one protocol.
// Messages of a SignalR hub hold either the canonical JSON invocation of a
// REST send (core.JSON), the REST multi-protocol payload (core.Binary: a
// MessagePack map from protocol name to framed message), or a frame already
// in this conn's protocol (core.Framed: an upstream's completion).
type codec struct {
	proto    hubproto.Protocol
	stateful bool // protocol version 2 on WebSockets: Ack/Sequence
}

var (
	_ core.Codec            = (*codec)(nil)
	_ core.Resumer          = (*codec)(nil)
	_ core.GoingAwayEncoder = (*codec)(nil)
)

func newCodec(p hubproto.Protocol, stateful bool) *codec { return &codec{proto: p, stateful: stateful} }

func (c *codec) Key() int {
	if c.proto.Binary() {
		return keyMessagePack
	}
	return keyJSON
}

func (c *codec) EncodeMessage(m *core.Message) core.Frame {
	var data []byte
	switch m.Type {
	case core.Framed:
		data = m.Data
	case core.JSON:
		inv := m.Data
		if m.Offset != 0 { // a group that keeps history: where the message stands in its stream
			inv = hubproto.WithHeaders(inv, [][2]string{
				{HeaderOffset, strconv.FormatUint(m.Offset, 10)}, {HeaderEpoch, m.Epoch}})
		}
		data, _ = c.proto.AppendInvocation(nil, inv) // nil on error: the conn gets nothing
	case core.Binary:
		data = c.fromVariants(m.Data)
	}
	return core.Frame{Data: data, Binary: c.proto.Binary()}
}

// fromVariants picks this protocol's blob of a multi-protocol payload; a
// MessagePack conn without one gets the JSON blob converted.
func (c *codec) fromVariants(payload []byte) []byte {
	vs, err := hubproto.ParseVariants(payload)
	if err != nil {
		return nil
	}
	if b, ok := vs[c.proto.Name()]; ok {
		return b
	}
	j, ok := vs[hubproto.JSON.Name()]
	if !ok || !c.proto.Binary() {
		return nil
	}
	out, err := c.proto.AppendInvocation(nil, bytes.TrimSuffix(j, []byte{hubproto.RecordSeparator}))
	if err != nil {
		return nil
	}
	return out
}

func (c *codec) Sequenced() bool { return c.stateful }

// AppendHead adds nothing: hub-protocol sequence ids are implicit (each side
// counts the trackable messages it receives).
func (c *codec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }

// EncodeDisconnected is the Close message of a server-initiated close (REST
// close, slow consumer): the client does not reconnect.
func (c *codec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return core.Frame{Data: c.proto.AppendClose(nil, reason, false), Binary: c.proto.Binary()}, true
}

// EncodeGoingAway is the Close message of a graceful shutdown: clients with
// automatic reconnect come back (to another node).
func (c *codec) EncodeGoingAway(reason string) core.Frame {
	return core.Frame{Data: c.proto.AppendClose(nil, reason, true), Binary: c.proto.Binary()}
}

// ResumeFrame is the Sequence message that starts a resumed stateful stream.
func (c *codec) ResumeFrame(next uint64) core.Frame {
	return core.Frame{Data: c.proto.AppendSequence(nil, next), Binary: c.proto.Binary()}
}

// frameSource serves a few fixed frames to a transport that has no conn yet
// (a failed handshake's answer).
type frameSource struct{ items []core.Item }

func (f *frameSource) Drain(_ core.Link, dst []core.Item) []core.Item {
	dst = append(dst, f.items...)
	f.items = nil
	return dst
}

func (f *frameSource) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
