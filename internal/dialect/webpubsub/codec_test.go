package webpubsub

import (
	"encoding/json"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

func TestCodecFrames(t *testing.T) {
	cases := []struct {
		name string
		m    *core.Message
		want string
	}{
		{"server json", &core.Message{Type: core.JSON, Data: []byte(`{"message":"Hello world!"}`)},
			`{"type":"message","from":"server","dataType":"json","data":{"message":"Hello world!"}}`},
		{"server text", &core.Message{Type: core.Text, Data: []byte("Hi there!")},
			`{"type":"message","from":"server","dataType":"text","data":"Hi there!"}`},
		{"server binary", &core.Message{Type: core.Binary, Data: []byte{0, 1, 2, 3, 4}},
			`{"type":"message","from":"server","dataType":"binary","data":"AAECAwQ="}`},
		{"group from user", &core.Message{Type: core.Text, Data: []byte("a\"b\n"), From: core.FromGroup, Group: "g\"1", FromUserID: "u1"},
			`{"type":"message","from":"group","group":"g\"1","fromUserId":"u1","dataType":"text","data":"a\"b\n"}`},
		{"group from server", &core.Message{Type: core.Protobuf, Data: []byte{0xff}, From: core.FromGroup, Group: "g"},
			`{"type":"message","from":"group","group":"g","dataType":"protobuf","data":"/w=="}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(jsonCodec{}.EncodeMessage(c.m).Data); got != c.want {
				t.Errorf("json: got %s\nwant %s", got, c.want)
			}
			rel := jsonCodec{reliable: true}
			full := string(rel.AppendHead(nil, 42, nil)) + string(rel.EncodeMessage(c.m).Data)
			var v map[string]any
			if err := json.Unmarshal([]byte(full), &v); err != nil || v["sequenceId"] != float64(42) {
				t.Errorf("reliable frame %s: %v %v", full, err, v["sequenceId"])
			}
			if raw := (rawCodec{}).EncodeMessage(c.m); string(raw.Data) != string(c.m.Data) ||
				raw.Binary != (c.m.Type == core.Binary || c.m.Type == core.Protobuf) {
				t.Errorf("raw frame %+v", raw)
			}
		})
	}
	if f, ok := (jsonCodec{}).EncodeDisconnected("bye \"now\""); !ok || string(f.Data) != `{"type":"system","event":"disconnected","message":"bye \"now\""}` {
		t.Errorf("disconnected = %s", f.Data)
	}
	if got := string(encodeAck(7, "Forbidden", "no").Data); got != `{"type":"ack","ackId":7,"success":false,"error":{"name":"Forbidden","message":"no"}}` {
		t.Errorf("ack = %s", got)
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := &core.Message{Type: core.JSON, Data: []byte(`{"user":"alice","text":"hello there, how are you doing today?","ts":1732150000}`), From: core.FromGroup, Group: "room-42", FromUserID: "alice"}
	b.ReportAllocs()
	for b.Loop() {
		jsonCodec{}.EncodeMessage(m)
	}
}

// A data message is encoded once and sent to every member: it is made in one allocation,
// its position in a history group's stream included (a frame that outgrew its estimate took a
// second one).
func TestEncodeMessageAllocatesOnce(t *testing.T) {
	data := make([]byte, 200)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	msgs := map[string]*core.Message{
		"text, history group": {Type: core.Text, Data: data, From: core.FromGroup, Group: "conn17", FromUserID: "alice",
			Offset: 18446744073709551615, Epoch: "0123456789abcdef"},
		"json, server":   {Type: core.JSON, Data: []byte(`{"a":[1,2,3],"b":"` + string(data) + `"}`), From: core.FromServer},
		"binary, group":  {Type: core.Binary, Data: data, From: core.FromGroup, Group: "g", Offset: 7, Epoch: "0123456789abcdef"},
		"text, no bytes": {Type: core.Text, From: core.FromGroup, Group: "g"},
	}
	for name, m := range msgs {
		for _, c := range []jsonCodec{{}, {reliable: true}} {
			if n := testing.AllocsPerRun(100, func() { c.EncodeMessage(m) }); n != 1 {
				t.Errorf("%s (reliable %v): %v allocations, want 1", name, c.reliable, n)
			}
		}
	}
}
