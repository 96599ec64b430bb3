package webpubsub

import (
	"bytes"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dialect/webpubsub/clientpb"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// FuzzDecodeRequest feeds arbitrary frames to the request decoder and the
// payload decoding; neither may panic, and a decoded JSON payload must be
// valid JSON (it is embedded verbatim in outgoing frames).
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"joinGroup","group":"g1","ackId":1}`,
		`{"type":"leaveGroup","group":"g1","ackId":2}`,
		`{"type":"sendToGroup","group":"g1","ackId":3,"noEcho":false,"dataType":"json","data":{"hello":"world"}}`,
		`{"type":"sendToGroup","group":"g","dataType":"binary","data":"AAEC"}`,
		`{"type":"event","event":"chat","ackId":4,"dataType":"text","data":"hi"}`,
		`{"type":"ping"}`,
		`{"type":"sequenceAck","sequenceId":12}`,
		`{"type":"sendToGroup","group":"g","dataType":"json","data":null}`,
		`{"type":"sendToGroup","dataType":"protobuf","data":"@@"}`,
		`{"type":"invoke","invocationId":"1","target":"event","event":"echo","dataType":"json","data":{"a":1}}`,
		`{"type":"invoke","invocationId":"2","event":"e","dataType":"binary","data":"AAE="}`,
		`{"type":"invoke","invocationId":"","target":7}`,
		`{"type":"cancelInvocation","invocationId":"1"}`,
		`{"type":"sendToGroup","group":"g","stream":{"streamId":"s","idleTimeoutMs":60000}}`,
		`{"type":"streamData","streamId":"s","streamSequenceId":1,"dataType":"text","data":"a"}`,
		`{"type":"streamData","streamId":7,"streamSequenceId":"x"}`,
		`{"type":"streamEnd","streamId":"s","error":{"message":"m","userErrorCode":"E"}}`,
		`{"type":`, `[]`, `null`, `{"ackId":-1}`, `{"type":"x","ackId":18446744073709551616}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := decodeRequest(frame)
		if err != nil {
			return
		}
		typ, data, err := r.payload()
		if err != nil {
			return
		}
		if typ.String() == "json" && !json.Valid(data) {
			t.Fatalf("decoded JSON payload is not valid JSON: %q", data)
		}
		validEvent(r.Event)
		streamID(r)
	})
}

// FuzzStreamFrames: whatever stream ids, sequence ids and error texts a
// client chooses, the group messages and the stream answers Switchboard
// builds from them are valid JSON on both JSON protocols.
func FuzzStreamFrames(f *testing.F) {
	f.Add("s1", uint64(1), false, "", "", "", "a")
	f.Add("x\"\xff", uint64(1<<63), true, "StreamAborted", "gave \x00up", "E42", "")
	f.Fuzz(func(t *testing.T, id string, seq uint64, end bool, name, msg, code, data string) {
		st := &core.Stream{ID: id, Seq: seq, End: end}
		if name != "" {
			st.Error = &core.StreamError{Name: name, Message: msg, Code: code}
		}
		m := &core.Message{Type: core.Text, Data: []byte(data), From: core.FromGroup, Group: "g", FromUserID: "u", Stream: st}
		for _, c := range []jsonCodec{{}, {reliable: true}} {
			b := c.EncodeMessage(m).Data
			if c.reliable {
				b = append(c.AppendHead(nil, 1, b), b...)
			}
			if !json.Valid(b) {
				t.Fatalf("reliable=%v: invalid JSON %q", c.reliable, b)
			}
		}
		for _, fr := range []core.Frame{encodeStreamAck(id, seq), encodeStreamNack(id, name, msg, seq), encodeStreamClosed(id, name, msg)} {
			if !json.Valid(fr.Data) {
				t.Fatalf("invalid JSON %q", fr.Data)
			}
		}
	})
}

// FuzzInvokeResponse feeds arbitrary invocation ids, handler answers and
// error texts to the invokeResponse encoders: every frame they make, on both
// JSON protocols, must be valid JSON (a handler's answer is embedded in it).
func FuzzInvokeResponse(f *testing.F) {
	f.Add("1", "application/json", []byte(`{"ok":true}`), "order not found")
	f.Add("x\"y", "application/json; charset=utf-8", []byte(`{"ok":`), "\xff\x00")
	f.Add("", "text/plain", []byte("h\xffi"), "")
	f.Add("id", "", []byte{0, 1, 2}, "m")
	f.Fuzz(func(t *testing.T, id, ct string, body []byte, msg string) {
		for _, b := range [][]byte{
			encodeInvokeResult(id, &upstream.EventResponse{Status: 200, ContentType: ct, Body: body}),
			encodeInvokeError(id, invokeHandlerError, msg),
		} {
			for _, c := range []jsonCodec{{}, {reliable: true}} {
				f := c.EncodeMessage(&core.Message{Type: core.Framed, Data: b}).Data
				if c.reliable {
					f = c.AppendHead(nil, 1, nil)
					f = append(f, c.EncodeMessage(&core.Message{Type: core.Framed, Data: b}).Data...)
				}
				if !json.Valid(f) {
					t.Fatalf("reliable=%v: invalid JSON frame %q", c.reliable, f)
				}
			}
		}
	})
}

// FuzzProtobufRequest feeds arbitrary binary frames to the protobuf request
// decoder (seeds in testdata/fuzz/FuzzProtobufRequest: every request type);
// it may not panic, a JSON payload must be valid JSON, and a decoded
// payload sent on to protobuf clients (both codecs, the reliable one's
// head in front) must decode as a DownstreamMessage with the same data.
func FuzzProtobufRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := decodeProtobufRequest(frame)
		if err != nil {
			return
		}
		typ, data, err := r.payload()
		if err != nil {
			return
		}
		if typ == core.JSON && !json.Valid(data) {
			t.Fatalf("decoded JSON payload is not valid JSON: %q", data)
		}
		m := &core.Message{Type: typ, Data: data, From: core.FromGroup, Group: r.Group}
		for _, c := range []protobufCodec{{}, {reliable: true}} {
			b := c.EncodeMessage(m).Data
			if c.reliable {
				b = append(c.AppendHead(nil, 1<<40, b), b...)
			}
			var down clientpb.DownstreamMessage
			if err := proto.Unmarshal(b, &down); err != nil {
				t.Fatalf("reliable=%v: frame % x does not decode: %v", c.reliable, b, err)
			}
			dm := down.GetDataMessage()
			if dm.GetGroup() != r.Group || c.reliable != (dm.GetSequenceId() == 1<<40) {
				t.Fatalf("reliable=%v: decoded %v", c.reliable, dm)
			}
			var got []byte
			switch d := dm.GetData().GetData().(type) {
			case *clientpb.MessageData_TextData:
				got = []byte(d.TextData)
			case *clientpb.MessageData_JsonData:
				got = []byte(d.JsonData)
			case *clientpb.MessageData_BinaryData:
				got = d.BinaryData
			case *clientpb.MessageData_ProtobufData:
				got, _ = proto.MarshalOptions{Deterministic: true}.Marshal(d.ProtobufData)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("reliable=%v: data % x came back as % x", c.reliable, data, got)
			}
		}
	})
}
