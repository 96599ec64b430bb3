package webpubsub

import (
	"encoding/json"
	"testing"
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
	})
}
