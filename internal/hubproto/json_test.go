package hubproto

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestJSONDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"invocation non-blocking", `{"type":1,"target":"newMessage","arguments":["hi"]}`,
			Message{Kind: Invocation, Target: "newMessage", Arguments: 1}},
		{"invocation blocking", `{"type":1,"invocationId":"0","target":"broadcast","arguments":["hi",{"a":[1,2]},3.5,null]}`,
			Message{Kind: Invocation, InvocationID: "0", Target: "broadcast", Arguments: 4}},
		{"invocation empty arguments, whitespace, unknown property", " {\n\"type\" : 1 , \"target\":\"t\",\"arguments\":[ ],\"x\":{\"y\":[\"]\"]}}\t",
			Message{Kind: Invocation, Target: "t"}},
		{"invocation stream ids and headers", `{"type":1,"target":"up","arguments":[],"streamIds":["1","2"],"headers":{"a":"b"}}`,
			Message{Kind: Invocation, Target: "up", StreamIDs: []string{"1", "2"}, Headers: map[string]string{"a": "b"}}},
		{"escaped names and values", `{"t\u0079pe":1,"target":"caf\u00e9 \"x\"","arguments":[","]}`,
			Message{Kind: Invocation, Target: `café "x"`, Arguments: 1}},
		{"stream invocation", `{"type":4,"invocationId":"7","target":"count","arguments":[10]}`,
			Message{Kind: StreamInvocation, InvocationID: "7", Target: "count", Arguments: 1}},
		{"stream item", `{"type":2,"invocationId":"1","item":{"x":1}}`,
			Message{Kind: StreamItem, InvocationID: "1"}},
		{"completion void", `{"type":3,"invocationId":"0"}`,
			Message{Kind: Completion, InvocationID: "0"}},
		{"completion result null", `{"type":3,"invocationId":"0","result":null}`,
			Message{Kind: Completion, InvocationID: "0", HasResult: true, Result: []byte("null")}},
		{"completion error", `{"type":3,"invocationId":"0","error":"Invocation failed, status code 404"}`,
			Message{Kind: Completion, InvocationID: "0", Error: "Invocation failed, status code 404"}},
		{"cancel", `{"type":5,"invocationId":"3"}`, Message{Kind: CancelInvocation, InvocationID: "3"}},
		{"ping", `{"type":6}`, Message{Kind: Ping}},
		{"close", `{"type":7}`, Message{Kind: Close}},
		{"close error reconnect", `{"type":7,"error":"Connection closed with an error.","allowReconnect":true}`,
			Message{Kind: Close, Error: "Connection closed with an error.", AllowReconnect: true}},
		{"ack", `{"type":8,"sequenceId":1394}`, Message{Kind: Ack, SequenceID: 1394}},
		{"sequence max", `{"type":9,"sequenceId":18446744073709551615}`, Message{Kind: Sequence, SequenceID: 1<<64 - 1}},
		{"unknown type", `{"type":42,"whatever":true}`, Message{Kind: 42}},
		{"unknown huge type", `{"type":123456789012345678901234567890}`, Message{Kind: 0}},
		{"unknown negative type", `{"type":-1}`, Message{Kind: 0}},
		{"type zero", `{"type":0,"target":5}`, Message{Kind: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSON.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			if string(got.Raw) != tt.in {
				t.Errorf("Raw = %q, want the input", got.Raw)
			}
			got.Raw = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode(%s)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestJSONDecodeErrors(t *testing.T) {
	tests := []struct {
		name, in, text string
	}{
		{"empty", ``, "empty message"},
		{"not json", `{"type":1,`, "not valid JSON"},
		{"array", `[1]`, "a JSON array, not an object"},
		{"missing type", `{"target":"x"}`, "missing required property 'type'"},
		{"type string", `{"type":"1"}`, "expected 'type' to be an integer"},
		{"type fraction", `{"type":1.5}`, "expected 'type' to be an integer"},
		{"type case", `{"Type":1}`, "missing required property 'type'"},
		{"missing target", `{"type":1,"arguments":[]}`, "missing required property 'target'"},
		{"target number", `{"type":1,"target":1,"arguments":[]}`, "expected 'target' to be a string, got number"},
		{"Target is not target", `{"type":1,"Target":"x","arguments":[]}`, "missing required property 'target'"},
		{"missing arguments", `{"type":1,"target":"x"}`, "missing required property 'arguments'"},
		{"arguments object", `{"type":1,"target":"x","arguments":{}}`, "expected 'arguments' to be an array, got object"},
		{"null invocation id", `{"type":1,"invocationId":null,"target":"x","arguments":[]}`, "expected 'invocationId' to be a string, got null"},
		{"numeric invocation id", `{"type":1,"invocationId":1,"target":"x","arguments":[]}`, "expected 'invocationId' to be a string"},
		{"stream ids not strings", `{"type":1,"target":"x","arguments":[],"streamIds":[1]}`, "array of strings"},
		{"stream ids object", `{"type":1,"target":"x","arguments":[],"streamIds":{}}`, "array of strings, got object"},
		{"headers array", `{"type":1,"target":"x","arguments":[],"headers":[]}`, "expected 'headers' to be an object"},
		{"header value number", `{"type":6,"headers":{"a":1}}`, `header "a" to be a string`},
		{"stream invocation without id", `{"type":4,"target":"x","arguments":[]}`, "missing required property 'invocationId'"},
		{"stream item without item", `{"type":2,"invocationId":"1"}`, "missing required property 'item'"},
		{"completion without id", `{"type":3}`, "missing required property 'invocationId'"},
		{"completion result and error", `{"type":3,"invocationId":"1","result":1,"error":"x"}`, "mutually exclusive"},
		{"completion error number", `{"type":3,"invocationId":"1","error":5}`, "expected 'error' to be a string"},
		{"cancel without id", `{"type":5}`, "missing required property 'invocationId'"},
		{"close allowReconnect string", `{"type":7,"allowReconnect":"yes"}`, "expected 'allowReconnect' to be a boolean"},
		{"close error null", `{"type":7,"error":null}`, "expected 'error' to be a string"},
		{"ack without sequence", `{"type":8}`, "missing required property 'sequenceId'"},
		{"ack negative", `{"type":8,"sequenceId":-1}`, "non-negative integer"},
		{"sequence fraction", `{"type":9,"sequenceId":1.5}`, "non-negative integer"},
		{"sequence overflow", `{"type":9,"sequenceId":18446744073709551616}`, "non-negative integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JSON.Decode([]byte(tt.in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%s) error = %v, want ErrMalformed", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("Decode(%s) error %q does not mention %q", tt.in, err, tt.text)
			}
		})
	}
}

func TestJSONAppend(t *testing.T) {
	const rs = "\x1e"
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"ping", JSON.AppendPing(nil), `{"type":6}` + rs},
		{"close", JSON.AppendClose(nil, "", false), `{"type":7}` + rs},
		{"close error", JSON.AppendClose(nil, "x", false), `{"type":7,"error":"x"}` + rs},
		{"close error reconnect", JSON.AppendClose(nil, "x", true), `{"type":7,"error":"x","allowReconnect":true}` + rs},
		{"close reconnect", JSON.AppendClose(nil, "", true), `{"type":7,"allowReconnect":true}` + rs},
		{"close escaped", JSON.AppendClose(nil, "a\"b\\c\n<", false), `{"type":7,"error":"a\"b\\c\n\u003c"}` + rs},
		{"ack", JSON.AppendAck(nil, 1394), `{"type":8,"sequenceId":1394}` + rs},
		{"sequence", JSON.AppendSequence(nil, 1<<64-1), `{"type":9,"sequenceId":18446744073709551615}` + rs},
		{"void completion", JSON.AppendCompletion(nil, "id", ""), `{"type":3,"invocationId":"id"}` + rs},
		{"error completion", JSON.AppendCompletion(nil, "id", "Invocation failed, status code 404"),
			`{"type":3,"invocationId":"id","error":"Invocation failed, status code 404"}` + rs},
		{"appends to dst", JSON.AppendPing([]byte("x")), `x{"type":6}` + rs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Fatalf("got  %q\nwant %q", tt.got, tt.want)
			}
			// Every frame decodes back with the JSON protocol.
			msg, rest, err := JSON.Next(tt.got[strings.IndexByte(string(tt.got), '{'):], 0)
			if err != nil || len(rest) != 0 {
				t.Fatalf("Next: %v, rest %q", err, rest)
			}
			if _, err := JSON.Decode(msg); err != nil {
				t.Fatalf("Decode: %v", err)
			}
		})
	}
}

func TestJSONAppendInvocation(t *testing.T) {
	inv := `{"type":1,"target":"newMessage","arguments":["hi",{"n":12345678901234567890}]}`
	got, err := JSON.AppendInvocation([]byte("x"), []byte(inv))
	if err != nil || string(got) != "x"+inv+"\x1e" {
		t.Fatalf("AppendInvocation = %q, %v", got, err)
	}
	for _, bad := range []string{"", "[]", "{\x1e}", `"x"`} {
		dst, err := JSON.AppendInvocation([]byte("keep"), []byte(bad))
		if err == nil || string(dst) != "keep" {
			t.Errorf("AppendInvocation(%q) = %q, %v; want an error and dst untouched", bad, dst, err)
		}
	}
}
