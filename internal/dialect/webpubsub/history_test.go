package webpubsub

import (
	"encoding/json"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

func TestHistoryFrames(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name string
		got  core.Frame
		want string
	}{
		{"group message with offset", jsonCodec{}.EncodeMessage(&core.Message{Type: core.Text, Data: []byte("hi"), From: core.FromGroup, Group: "room:1", FromUserID: "u", Offset: 12, Epoch: "00000000000000ab"}),
			`{"type":"message","from":"group","group":"room:1","fromUserId":"u","offset":12,"epoch":"00000000000000ab","dataType":"text","data":"hi"}`},
		{"group message without history", jsonCodec{}.EncodeMessage(&core.Message{Type: core.Text, Data: []byte("hi"), From: core.FromGroup, Group: "g"}),
			`{"type":"message","from":"group","group":"g","dataType":"text","data":"hi"}`},
		{"join ack, history, no offset sent", encodeJoinAck(1, core.JoinResult{History: true, Offset: 5, Epoch: "e"}, false),
			`{"type":"ack","ackId":1,"success":true,"offset":5,"epoch":"e"}`},
		{"join ack, recovered", encodeJoinAck(2, core.JoinResult{History: true, Recovered: true, Offset: 5, Epoch: "e"}, true),
			`{"type":"ack","ackId":2,"success":true,"recovered":true,"offset":5,"epoch":"e"}`},
		{"join ack, offset sent to a group without history", encodeJoinAck(3, core.JoinResult{}, true),
			`{"type":"ack","ackId":3,"success":true,"recovered":false}`},
		{"history page", encodeHistory(u(4), "g", &history.Messages{Epoch: "e", Offset: 9, Oldest: 8, More: true, Records: []history.Record{
			{Offset: 8, Type: uint8(core.JSON), Data: []byte(`{"a":1}`), FromUserID: "u"}, {Offset: 9, Type: uint8(core.Binary), Data: []byte{1}}}}),
			`{"type":"history","ackId":4,"group":"g","offset":9,"epoch":"e","oldest":8,"more":true,"messages":[{"offset":8,"fromUserId":"u","dataType":"json","data":{"a":1}},{"offset":9,"dataType":"binary","data":"AQ=="}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got.Data) != tt.want {
				t.Errorf("got  %s\nwant %s", tt.got.Data, tt.want)
			}
			if !json.Valid(tt.got.Data) {
				t.Errorf("not JSON: %s", tt.got.Data)
			}
		})
	}
}

func TestDecodeHistoryRequest(t *testing.T) {
	r, err := decodeRequest([]byte(`{"type":"joinGroup","group":"g","ackId":1,"offset":18446744073709551615,"epoch":"e"}`))
	if err != nil || r.Offset == nil || *r.Offset != 1<<64-1 || r.Epoch != "e" {
		t.Errorf("joinGroup with offset: %+v %v", r, err)
	}
	if _, err := decodeRequest([]byte(`{"type":"joinGroup","group":"g","offset":-1}`)); err == nil {
		t.Error("negative offset accepted")
	}
	if _, err := decodeRequest([]byte(`{"type":"fetchHistory","group":"g","offset":"7"}`)); err == nil {
		t.Error("offset as a string accepted")
	}
}
