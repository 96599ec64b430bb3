package hubproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

// mp builds a MessagePack value from Go values: int, uint64, string, bool, nil, []any,
// map[string]any (one entry), mpBin and mpRaw.
type (
	mpBin []byte
	mpRaw []byte
	mpMap [][2]any // ordered map
)

func mp(vals ...any) []byte {
	var b []byte
	for _, v := range vals {
		b = mpAppend(b, v)
	}
	return b
}

func mpAppend(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return msgp.AppendNil(b)
	case int:
		return msgp.AppendInt64(b, int64(v))
	case uint64:
		return msgp.AppendUint64(b, v)
	case float64:
		return msgp.AppendFloat64(b, v)
	case string:
		return msgp.AppendString(b, v)
	case bool:
		return msgp.AppendBool(b, v)
	case mpBin:
		return msgp.AppendBytes(b, v)
	case mpRaw:
		return append(b, v...)
	case []any:
		b = msgp.AppendArrayHeader(b, uint32(len(v)))
		for _, e := range v {
			b = mpAppend(b, e)
		}
		return b
	case mpMap:
		b = msgp.AppendMapHeader(b, uint32(len(v)))
		for _, kv := range v {
			b = mpAppend(mpAppend(b, kv[0]), kv[1])
		}
		return b
	}
	panic("mp: unsupported type")
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestMsgpackDecode(t *testing.T) {
	empty := mpMap{}
	tests := []struct {
		name string
		in   []byte
		want Message
	}{
		{"spec vector [1,{},\"xyz\",\"method\",[42],[]]", mustHex("96 01 80 A3 78 79 7A A6 6D 65 74 68 6F 64 91 2A 90"),
			Message{Kind: Invocation, InvocationID: "xyz", Target: "method", Arguments: 1}},
		{"invocation 5 elements nil id", mp([]any{1, empty, nil, "send", []any{"hi", []any{1, 2}, mpMap{{"a", 1.5}}}}),
			Message{Kind: Invocation, Target: "send", Arguments: 3}},
		{"invocation headers and stream ids", mp([]any{1, mpMap{{"k", "v"}}, "1", "up", []any{}, []any{"s1", "s2"}}),
			Message{Kind: Invocation, InvocationID: "1", Target: "up", StreamIDs: []string{"s1", "s2"}, Headers: map[string]string{"k": "v"}}},
		{"invocation extra element ignored", mp([]any{1, empty, nil, "t", []any{}, []any{}, "future"}),
			Message{Kind: Invocation, Target: "t"}},
		{"type as uint8", mustHex("91 CC 06"), Message{Kind: Ping}},
		{"stream invocation", mp([]any{4, empty, "2", "count", []any{10}}),
			Message{Kind: StreamInvocation, InvocationID: "2", Target: "count", Arguments: 1}},
		{"stream item", mp([]any{2, empty, "2", mpMap{{"x", nil}}}), Message{Kind: StreamItem, InvocationID: "2"}},
		{"completion error", mp([]any{3, empty, "0", 1, "boom"}), Message{Kind: Completion, InvocationID: "0", Error: "boom"}},
		{"completion void", mp([]any{3, empty, "0", 2}), Message{Kind: Completion, InvocationID: "0"}},
		{"completion result", mp([]any{3, empty, "0", 3, nil}), Message{Kind: Completion, InvocationID: "0", HasResult: true, Result: []byte{0xc0}}},
		{"cancel", mp([]any{5, empty, "9"}), Message{Kind: CancelInvocation, InvocationID: "9"}},
		{"ping", mustHex("91 06"), Message{Kind: Ping}},
		{"close nil error", mp([]any{7, nil}), Message{Kind: Close}},
		{"close error reconnect", mp([]any{7, "bye", true}), Message{Kind: Close, Error: "bye", AllowReconnect: true}},
		{"ack", mp([]any{8, 1394}), Message{Kind: Ack, SequenceID: 1394}},
		{"sequence max", mp([]any{9, uint64(1<<64 - 1)}), Message{Kind: Sequence, SequenceID: 1<<64 - 1}},
		{"unknown type", mp([]any{42, "anything"}), Message{Kind: 42}},
		{"unknown type 300", mp([]any{300}), Message{Kind: 0}},
		{"unknown type negative", mp([]any{-1}), Message{Kind: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MessagePack.Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode(% X): %v", tt.in, err)
			}
			if !bytes.Equal(got.Raw, tt.in) {
				t.Errorf("Raw = % X, want the input", got.Raw)
			}
			got.Raw = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode(% X)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMsgpackDecodeErrors(t *testing.T) {
	empty := mpMap{}
	tests := []struct {
		name string
		in   []byte
		text string
	}{
		{"empty", nil, "not a MessagePack array"},
		{"map", mp(mpMap{{"type", 1}}), "not a MessagePack array"},
		{"empty array", mp([]any{}), "message array is empty"},
		{"type string", mp([]any{"1"}), "message type must be an integer"},
		{"invocation too short", mp([]any{1, empty, nil, "t"}), "invocation message has 4 elements, needs at least 5"},
		{"headers nil", mp([]any{1, nil, nil, "t", []any{}}), "headers"},
		{"header value int", mp([]any{1, mpMap{{"a", 1}}, nil, "t", []any{}}), `header "a"`},
		{"invocation id int", mp([]any{1, empty, 5, "t", []any{}}), "invocation id"},
		{"target nil", mp([]any{1, empty, nil, nil, []any{}}), "target"},
		{"arguments map", mp([]any{1, empty, nil, "t", empty}), "arguments"},
		{"arguments truncated", mustHex("95 01 80 C0 A1 74 92 01"), "arguments: element 1"},
		{"arguments count lies", mustHex("95 01 80 C0 A1 74 DD FF FF FF FF"), "arguments: element 0"},
		{"stream ids ints", mp([]any{1, empty, nil, "t", []any{}, []any{1}}), "stream ids"},
		{"stream invocation nil id", mp([]any{4, empty, nil, "t", []any{}}), "invocation id"},
		{"completion bad kind", mp([]any{3, empty, "0", 4}), "invalid completion result kind 4"},
		{"completion error missing", mp([]any{3, empty, "0", 1}), "needs at least 5"},
		{"completion error not string", mp([]any{3, empty, "0", 1, 5}), "completion error"},
		{"completion result missing", mp([]any{3, empty, "0", 3}), "needs at least 5"},
		{"cancel missing id", mp([]any{5, empty}), "needs at least 3"},
		{"close missing error", mp([]any{7}), "needs at least 2"},
		{"close reconnect int", mp([]any{7, nil, 1}), "allow reconnect"},
		{"ack negative", mp([]any{8, -1}), "sequence id"},
		{"ack missing", mp([]any{8}), "needs at least 2"},
		{"trailing bytes", append(mustHex("91 06"), 0xC0), "1 bytes after the message array"},
		{"declared elements missing", mustHex("94 05 80 A1 31"), "cancel_invocation message"},
		{"header count lies", mustHex("95 01 DF FF FF FF FF"), "header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := MessagePack.Decode(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(% X) error = %v, want ErrMalformed", tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("Decode(% X) error %q does not mention %q", tt.in, err, tt.text)
			}
		})
	}
}

func TestMsgpackAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"ping", MessagePack.AppendPing(nil), mustHex("02 91 06")},
		{"close", MessagePack.AppendClose(nil, "", false), mustHex("04 93 07 C0 C2")},
		{"close error reconnect", MessagePack.AppendClose(nil, "x", true), mustHex("05 93 07 A1 78 C3")},
		{"ack", MessagePack.AppendAck(nil, 1394), mustHex("05 92 08 CD 05 72")},
		{"sequence", MessagePack.AppendSequence(nil, 1), mustHex("03 92 09 01")},
		{"void completion", MessagePack.AppendCompletion(nil, "id", ""), mustHex("07 94 03 80 A2 69 64 02")},
		{"error completion", MessagePack.AppendCompletion(nil, "id", "no"), frame(mp([]any{3, mpMap{}, "id", 1, "no"}))},
		{"appends to dst", MessagePack.AppendPing([]byte{0xAA}), mustHex("AA 02 91 06")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Fatalf("got  % X\nwant % X", tt.got, tt.want)
			}
		})
	}
	// Round trip through Next + Decode.
	long := strings.Repeat("e", 300)
	frameBytes := MessagePack.AppendClose(nil, long, true)
	msg, rest, err := MessagePack.Next(frameBytes, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Next: %v", err)
	}
	m, err := MessagePack.Decode(msg)
	if err != nil || m.Kind != Close || m.Error != long || !m.AllowReconnect {
		t.Fatalf("Decode = %+v, %v", m, err)
	}
}
