package webpubsub

import (
	"encoding/base64"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

// Subprotocol names.
const (
	ProtocolJSON         = "json.webpubsub.azure.v1"
	ProtocolJSONReliable = "json.reliable.webpubsub.azure.v1"
)

// Codec keys, unique across dialects (see core.Codec.Key).
const (
	keyRaw = iota
	keyJSON
	keyJSONReliable
	// 3 is free; SignalR's codecs use 4 and 5.
	keyProtobuf         = 6
	keyProtobufReliable = 7
)

// rawCodec sends payloads as they are: text and JSON as text frames, binary
// and protobuf as binary frames.
type rawCodec struct{}

func (rawCodec) Key() int        { return keyRaw }
func (rawCodec) Sequenced() bool { return false }
func (rawCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte {
	return dst
}
func (rawCodec) EncodeDisconnected(string) (core.Frame, bool) { return core.Frame{}, false }
func (rawCodec) EncodeMessage(m *core.Message) core.Frame {
	if m.Type == core.GroupState {
		return core.Frame{} // the raw protocol has no form of it
	}
	if m.Type == core.Framed {
		return core.Frame{} // an invokeResponse: raw clients cannot invoke
	}
	if m.Stream != nil && m.Stream.End && len(m.Data) == 0 {
		return core.Frame{} // a group stream's end marker: raw clients get the fragments' data only
	}
	return core.Frame{Data: m.Data, Binary: m.Type == core.Binary || m.Type == core.Protobuf}
}

// jsonCodec encodes json.webpubsub.azure.v1 frames; with reliable set, data
// messages carry a sequenceId and stay buffered until acknowledged.
type jsonCodec struct{ reliable bool }

func (c jsonCodec) Key() int {
	if c.reliable {
		return keyJSONReliable
	}
	return keyJSON
}

func (c jsonCodec) Sequenced() bool { return c.reliable }

// AppendHead opens the object with the sequence id; the shared body then
// continues it without its own opening brace.
func (c jsonCodec) AppendHead(dst []byte, seq uint64, _ []byte) []byte {
	dst = append(dst, `{"sequenceId":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, ',')
}

func (c jsonCodec) EncodeMessage(m *core.Message) core.Frame {
	if m.Type == core.GroupState { // a control frame (Conn.SendMessage): whole, never sequenced
		return core.Frame{Data: encodeStateUpdate(m)}
	}
	if m.Type == core.Framed { // an invokeResponse, built without its opening brace
		if c.reliable {
			return core.Frame{Data: m.Data}
		}
		return core.Frame{Data: append([]byte{'{'}, m.Data...)}
	}
	// Sized for the whole frame, its position in a history group's stream included, so that
	// it is made in one allocation: the fields' names take under 96 bytes, an offset 20.
	b := make([]byte, 0, 96+len(m.Group)+len(m.FromUserID)+20+len(m.Epoch)+len(m.Data)*4/3+8)
	if !c.reliable {
		b = append(b, '{')
	}
	b = appendMessage(b, m)
	return core.Frame{Data: b}
}

func (c jsonCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	b := append([]byte(nil), `{"type":"system","event":"disconnected","message":`...)
	b = jsonstring.Append(b, reason)
	return core.Frame{Data: append(b, '}')}, true
}

// appendMessage appends the fields of a message frame, after its opening
// brace, in the order the service uses.
func appendMessage(b []byte, m *core.Message) []byte {
	if m.From == core.FromGroup {
		b = append(b, `"type":"message","from":"group","group":`...)
		b = jsonstring.Append(b, m.Group)
		if m.FromUserID != "" {
			b = append(b, `,"fromUserId":`...)
			b = jsonstring.Append(b, m.FromUserID)
		}
		if m.Offset != 0 {
			// History-keeping group: the message's place in the stream, for
			// a client that resumes (the official clients ignore them).
			b = appendPosition(b, m.Offset, m.Epoch)
		}
		if m.Stream != nil {
			b = appendStream(b, m.Stream)
		}
		b = append(b, ',')
	} else {
		b = append(b, `"type":"message","from":"server",`...)
	}
	b = appendData(b, m.Type, m.Data)
	return append(b, '}')
}

// appendStream appends a group stream fragment's
// `,"stream":{"streamId":…,"streamSequenceId":n,"endOfStream":true,"error":{…}}`.
func appendStream(b []byte, st *core.Stream) []byte {
	b = append(b, `,"stream":{"streamId":`...)
	b = jsonstring.Append(b, st.ID)
	b = append(b, `,"streamSequenceId":`...)
	b = strconv.AppendUint(b, st.Seq, 10)
	if st.End {
		b = append(b, `,"endOfStream":true`...)
	}
	if e := st.Error; e != nil {
		b = append(b, `,"error":{"name":`...)
		b = jsonstring.Append(b, e.Name)
		b = append(b, `,"message":`...)
		b = jsonstring.Append(b, e.Message)
		if e.Code != "" {
			b = append(b, `,"userErrorCode":`...)
			b = jsonstring.Append(b, e.Code)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendPosition appends `,"offset":N,"epoch":"…"`.
func appendPosition(b []byte, offset uint64, epoch string) []byte {
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	b = append(b, `,"epoch":`...)
	return jsonstring.Append(b, epoch)
}

// appendData appends the dataType and data fields of a payload.
func appendData(b []byte, t core.DataType, data []byte) []byte {
	b = append(b, `"dataType":"`...)
	b = append(b, t.String()...)
	b = append(b, `","data":`...)
	switch t {
	case core.JSON:
		b = append(b, data...)
	case core.Text:
		b = jsonstring.AppendBytes(b, data)
	default:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
	}
	return b
}

func encodeConnected(connID, userID, reconnectionToken string) core.Frame {
	b := append([]byte(nil), `{"type":"system","event":"connected","connectionId":`...)
	b = jsonstring.Append(b, connID)
	if userID != "" {
		b = append(b, `,"userId":`...)
		b = jsonstring.Append(b, userID)
	}
	if reconnectionToken != "" {
		b = append(b, `,"reconnectionToken":`...)
		b = jsonstring.Append(b, reconnectionToken)
	}
	return core.Frame{Data: append(b, '}')}
}

func encodeAck(id uint64, errName, errMsg string) core.Frame {
	b := append([]byte(nil), `{"type":"ack","ackId":`...)
	b = strconv.AppendUint(b, id, 10)
	if errName == "" {
		return core.Frame{Data: append(b, `,"success":true}`...)}
	}
	b = append(b, `,"success":false,"error":{"name":`...)
	b = jsonstring.Append(b, errName)
	b = append(b, `,"message":`...)
	b = jsonstring.Append(b, errMsg)
	return core.Frame{Data: append(b, "}}"...)}
}

var pongFrame = core.Frame{Data: []byte(`{"type":"pong"}`)}

// encodeJoinAck is the ack of a joinGroup: success plus, for a group that
// keeps history, the stream's position and (when the client sent an offset)
// whether every missed message was replayed. A client that sent an offset
// for a group without history is told recovered: false.
func encodeJoinAck(id uint64, res core.JoinResult, recovering bool) core.Frame {
	b := append([]byte(nil), `{"type":"ack","ackId":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"success":true`...)
	if recovering {
		b = append(b, `,"recovered":`...)
		b = strconv.AppendBool(b, res.Recovered)
	}
	if res.History {
		b = appendPosition(b, res.Offset, res.Epoch)
	}
	return core.Frame{Data: append(b, '}')}
}

// encodeHistory is the answer to fetchHistory:
// {"type":"history","ackId":N,"group":g,"offset":top,"epoch":e,"oldest":o,
// "more":bool,"messages":[{"offset":n,"fromUserId":u,"dataType":t,"data":d}]}.
func encodeHistory(ackID *uint64, group string, page *history.Messages) core.Frame {
	b := append([]byte(nil), `{"type":"history"`...)
	if ackID != nil {
		b = append(b, `,"ackId":`...)
		b = strconv.AppendUint(b, *ackID, 10)
	}
	b = append(b, `,"group":`...)
	b = jsonstring.Append(b, group)
	b = appendPosition(b, page.Offset, page.Epoch)
	b = append(b, `,"oldest":`...)
	b = strconv.AppendUint(b, page.Oldest, 10)
	b = append(b, `,"more":`...)
	b = strconv.AppendBool(b, page.More)
	b = append(b, `,"messages":[`...)
	for i := range page.Records {
		r := &page.Records[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"offset":`...)
		b = strconv.AppendUint(b, r.Offset, 10)
		if r.FromUserID != "" {
			b = append(b, `,"fromUserId":`...)
			b = jsonstring.Append(b, r.FromUserID)
		}
		b = append(b, ',')
		b = appendData(b, core.DataType(r.Type), r.Data)
		b = append(b, '}')
	}
	return core.Frame{Data: append(b, "]}"...)}
}
