package webpubsub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dialect/webpubsub/clientpb"
	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Protobuf subprotocol names: binary frames, one clientpb.UpstreamMessage or
// clientpb.DownstreamMessage each.
const (
	ProtocolProtobuf         = "protobuf.webpubsub.azure.v1"
	ProtocolProtobufReliable = "protobuf.reliable.webpubsub.azure.v1"
)

// Field numbers of the data messages the codec appends by hand (see
// clientpb/webpubsub.client.proto).
const (
	fieldDownstreamData = 2 // DownstreamMessage.data_message
	fieldDataFrom       = 1 // DataMessage.from
	fieldDataGroup      = 2 // DataMessage.group
	fieldDataData       = 3 // DataMessage.data
	fieldDataSequenceID = 4 // DataMessage.sequence_id
	fieldText           = 1 // MessageData.text_data
	fieldBinary         = 2 // MessageData.binary_data
	fieldProtobuf       = 3 // MessageData.protobuf_data
	fieldJSON           = 4 // MessageData.json_data
)

// protobufCodec encodes the protobuf subprotocols' frames. Data messages are
// appended by hand (protowire), once per message: without reliable the
// whole DownstreamMessage; with it the DataMessage's fields but its sequence
// id, which AppendHead puts with the DownstreamMessage's tag and length in
// front of the shared body (field order does not matter in protobuf).
// Acks and system messages, once per conn, go through the generated types.
type protobufCodec struct{ reliable bool }

func (c protobufCodec) Key() int {
	if c.reliable {
		return keyProtobufReliable
	}
	return keyProtobuf
}

func (c protobufCodec) Sequenced() bool { return c.reliable }

// AppendHead appends the data_message tag and length of the whole data
// message and its sequence_id field; body holds the other fields.
func (c protobufCodec) AppendHead(dst []byte, seq uint64, body []byte) []byte {
	n := protowire.SizeTag(fieldDataSequenceID) + protowire.SizeVarint(seq) + len(body)
	dst = protowire.AppendTag(dst, fieldDownstreamData, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(n))
	dst = protowire.AppendTag(dst, fieldDataSequenceID, protowire.VarintType)
	return protowire.AppendVarint(dst, seq)
}

func (c protobufCodec) EncodeMessage(m *core.Message) core.Frame {
	switch {
	case m.Type == core.GroupState, m.Type == core.Framed:
		return core.Frame{} // the protobuf protocol has no form of group state or invokeResponse
	case m.Stream != nil && m.Stream.End && len(m.Data) == 0:
		return core.Frame{} // a group stream's end marker: protobuf clients get the fragments' data only
	}
	field, d := dataField(m)
	group := utf8Safe(m.Group) // a group named over REST or in a token may not be UTF-8; a protobuf string must be
	b := make([]byte, 0, len(d)+len(group)+32)
	if !c.reliable {
		b = protowire.AppendTag(b, fieldDownstreamData, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(dataMessageSize(m.From, group, field, d)))
	}
	b = appendDataMessage(b, m.From, group, field, d)
	return core.Frame{Data: b, Binary: true}
}

// dataMessageSize is the size of appendDataMessage's fields.
func dataMessageSize(from core.Origin, group string, field protowire.Number, d []byte) int {
	n := protowire.SizeTag(fieldDataFrom) + protowire.SizeBytes(len("server"))
	if from == core.FromGroup {
		n = protowire.SizeTag(fieldDataFrom) + protowire.SizeBytes(len("group")) +
			protowire.SizeTag(fieldDataGroup) + protowire.SizeBytes(len(group))
	}
	inner := protowire.SizeTag(field) + protowire.SizeBytes(len(d))
	return n + protowire.SizeTag(fieldDataData) + protowire.SizeBytes(inner)
}

// appendDataMessage appends a DataMessage's from, group and data fields,
// the data in MessageData's field.
func appendDataMessage(b []byte, from core.Origin, group string, field protowire.Number, d []byte) []byte {
	b = protowire.AppendTag(b, fieldDataFrom, protowire.BytesType)
	if from == core.FromGroup {
		b = protowire.AppendString(b, "group")
		b = protowire.AppendTag(b, fieldDataGroup, protowire.BytesType)
		b = protowire.AppendString(b, group)
	} else {
		b = protowire.AppendString(b, "server")
	}
	b = protowire.AppendTag(b, fieldDataData, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(field)+protowire.SizeBytes(len(d))))
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, d)
}

// dataField chooses the MessageData field of a payload: text_data,
// json_data (the newest published .proto; older docs said text_data),
// binary_data, or protobuf_data holding the serialized google.protobuf.Any
// as it came. Text or JSON that is not UTF-8 (a protobuf string must be)
// and protobuf data that is not an Any (a JSON client's base64 can be
// anything) go as binary_data, which every client can read.
func dataField(m *core.Message) (protowire.Number, []byte) {
	switch m.Type {
	case core.Text:
		if utf8.Valid(m.Data) {
			return fieldText, m.Data
		}
	case core.JSON:
		if utf8.Valid(m.Data) {
			return fieldJSON, m.Data
		}
	case core.Protobuf:
		if validAny(m.Data) {
			return fieldProtobuf, m.Data
		}
	}
	return fieldBinary, m.Data
}

// validAny reports whether b is a serialized google.protobuf.Any.
func validAny(b []byte) bool {
	return proto.Unmarshal(b, new(anypb.Any)) == nil
}

func (c protobufCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return encodeDownstream(&clientpb.DownstreamMessage{Message: &clientpb.DownstreamMessage_SystemMessage_{
		SystemMessage: &clientpb.DownstreamMessage_SystemMessage{Message: &clientpb.DownstreamMessage_SystemMessage_DisconnectedMessage_{
			DisconnectedMessage: &clientpb.DownstreamMessage_SystemMessage_DisconnectedMessage{Reason: utf8Safe(reason)},
		}},
	}}), true
}

func encodeProtobufConnected(connID, userID, reconnectionToken string) core.Frame {
	return encodeDownstream(&clientpb.DownstreamMessage{Message: &clientpb.DownstreamMessage_SystemMessage_{
		SystemMessage: &clientpb.DownstreamMessage_SystemMessage{Message: &clientpb.DownstreamMessage_SystemMessage_ConnectedMessage_{
			ConnectedMessage: &clientpb.DownstreamMessage_SystemMessage_ConnectedMessage{
				ConnectionId: connID, UserId: utf8Safe(userID), ReconnectionToken: reconnectionToken,
			},
		}},
	}})
}

func encodeProtobufAck(id uint64, errName, errMsg string) core.Frame {
	ack := &clientpb.DownstreamMessage_AckMessage{AckId: id, Success: errName == ""}
	if errName != "" {
		ack.Error = &clientpb.DownstreamMessage_AckMessage_ErrorMessage{Name: errName, Message: utf8Safe(errMsg)}
	}
	return encodeDownstream(&clientpb.DownstreamMessage{Message: &clientpb.DownstreamMessage_AckMessage_{AckMessage: ack}})
}

func encodeDownstream(m *clientpb.DownstreamMessage) core.Frame {
	b, err := proto.Marshal(m)
	if err != nil { // only invalid UTF-8 fails, which the callers rule out
		panic(fmt.Sprintf("webpubsub: encode protobuf frame: %v", err))
	}
	return core.Frame{Data: b, Binary: true}
}

// utf8Safe returns s with invalid UTF-8 replaced (protobuf strings must be
// UTF-8; an ack may quote the client's bytes, a user id comes from a token).
func utf8Safe(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
}

// decodeProtobufRequest parses one binary frame of the protobuf
// subprotocols into the request the JSON ones decode to, its payload
// already decoded.
func decodeProtobufRequest(frame []byte) (*request, error) {
	var up clientpb.UpstreamMessage
	if err := proto.Unmarshal(frame, &up); err != nil {
		return nil, fmt.Errorf("%w: not a protobuf UpstreamMessage: %s", errMalformed, excerpt.Error(err))
	}
	r := &request{}
	switch m := up.Message.(type) {
	case *clientpb.UpstreamMessage_SendToGroupMessage_:
		g := m.SendToGroupMessage
		r.Type, r.Group, r.AckID, r.NoEcho = "sendToGroup", g.GetGroup(), g.AckId, g.GetNoEcho()
		r.decoded = decodeMessageData(g.GetData())
	case *clientpb.UpstreamMessage_EventMessage_:
		e := m.EventMessage
		r.Type, r.Event, r.AckID = "event", e.GetEvent(), e.AckId
		r.decoded = decodeMessageData(e.GetData())
	case *clientpb.UpstreamMessage_JoinGroupMessage_:
		r.Type, r.Group, r.AckID = "joinGroup", m.JoinGroupMessage.GetGroup(), m.JoinGroupMessage.AckId
	case *clientpb.UpstreamMessage_LeaveGroupMessage_:
		r.Type, r.Group, r.AckID = "leaveGroup", m.LeaveGroupMessage.GetGroup(), m.LeaveGroupMessage.AckId
	case *clientpb.UpstreamMessage_SequenceAckMessage_:
		id := m.SequenceAckMessage.GetSequenceId()
		r.Type, r.SequenceID = "sequenceAck", &id
	default:
		return nil, fmt.Errorf("%w: the UpstreamMessage holds no request this server knows (fields 1, 5, 6, 7 and 8)", errMalformed)
	}
	return r, nil
}

// decodedPayload is a protobuf request's payload (request.payload returns
// it).
type decodedPayload struct {
	typ  core.DataType
	data []byte
	err  error
}

// decodeMessageData maps MessageData to a payload: text_data is text,
// json_data JSON (checked and compacted, as a JSON client's), binary_data
// binary and protobuf_data protobuf (the serialized Any, which JSON clients
// get base64 and raw clients and the event handler as it is).
func decodeMessageData(d *clientpb.MessageData) *decodedPayload {
	switch v := d.GetData().(type) {
	case *clientpb.MessageData_TextData:
		return &decodedPayload{typ: core.Text, data: []byte(v.TextData)}
	case *clientpb.MessageData_JsonData:
		var buf bytes.Buffer
		if err := json.Compact(&buf, []byte(v.JsonData)); err != nil {
			return &decodedPayload{err: fmt.Errorf("json_data is not valid JSON: %s", excerpt.Error(err))}
		}
		if bytes.Equal(buf.Bytes(), []byte("null")) { // as a JSON client's data: null
			return &decodedPayload{err: errors.New("json_data must not be null")}
		}
		return &decodedPayload{typ: core.JSON, data: buf.Bytes()}
	case *clientpb.MessageData_BinaryData:
		return &decodedPayload{typ: core.Binary, data: v.BinaryData}
	case *clientpb.MessageData_ProtobufData:
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v.ProtobufData)
		if err != nil {
			return &decodedPayload{err: fmt.Errorf("protobuf_data: %s", excerpt.Error(err))}
		}
		return &decodedPayload{typ: core.Protobuf, data: b}
	default:
		return &decodedPayload{err: errors.New("data is required: MessageData has none of text_data, binary_data, protobuf_data, json_data")}
	}
}
