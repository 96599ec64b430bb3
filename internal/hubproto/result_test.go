package hubproto

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

func TestWithInvocationID(t *testing.T) {
	tests := []struct{ in, id, want string }{
		{`{"type":1,"target":"t","arguments":[1]}`, "s1", `{"invocationId":"s1","type":1,"target":"t","arguments":[1]}`},
		{` {"type":1,"target":"t","arguments":[]} `, `a"<b`, `{"invocationId":"a\"\u003cb","type":1,"target":"t","arguments":[]}`},
		{`{}`, "x", `{"invocationId":"x"}`},
		{`[]`, "x", `[]`}, // not an invocation: unchanged
	}
	for _, tt := range tests {
		got := string(WithInvocationID([]byte(tt.in), tt.id))
		if got != tt.want {
			t.Errorf("WithInvocationID(%s, %q) = %s, want %s", tt.in, tt.id, got, tt.want)
		}
	}
	// Both protocols carry the id to the client.
	inv := WithInvocationID([]byte(`{"type":1,"target":"t","arguments":[1]}`), "s7")
	for _, p := range []Protocol{JSON, MessagePack} {
		framed, err := p.AppendInvocation(nil, inv)
		if err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
		msg, _, err := p.Next(framed, 0)
		if err != nil {
			t.Fatalf("%s: %v", p.Name(), err)
		}
		m, err := p.Decode(msg)
		if err != nil || m.Kind != Invocation || m.InvocationID != "s7" || m.Target != "t" || m.Arguments != 1 {
			t.Fatalf("%s: decoded %+v, %v", p.Name(), m, err)
		}
	}
}

func TestAppendStreamItem(t *testing.T) {
	got, err := JSON.AppendStreamItem(nil, "st<1>", []byte(` {"a":[1,"x"]} `))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":2,"invocationId":"st\u003c1\u003e","item":{"a":[1,"x"]}}` + "\x1e"; string(got) != want {
		t.Fatalf("json = %q, want %q", got, want)
	}
	got, err = MessagePack.AppendStreamItem([]byte{0xAA}, "st", []byte(`{"a":[1,"x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte{0xAA}, frame(mp([]any{2, mpMap{}, "st", mpMap{{"a", []any{1, "x"}}}}))...); string(got) != string(want) {
		t.Fatalf("messagepack = % x, want % x", got, want)
	}
	for _, p := range []Protocol{JSON, MessagePack} {
		for _, bad := range []string{"", " ", `{"a":`, "nul"} {
			if out, err := p.AppendStreamItem([]byte("x"), "s", []byte(bad)); err == nil || string(out) != "x" {
				t.Errorf("%s.AppendStreamItem(%q) = %q, %v; want an error and dst unchanged", p.Name(), bad, out, err)
			}
		}
	}
}

// TestCompletionResult checks that Decode exposes a Completion's result and that ResultJSON
// makes JSON of it in both protocols.
func TestCompletionResult(t *testing.T) {
	tests := []struct {
		name     string
		proto    Protocol
		msg      []byte
		has      bool
		wantJSON string
		err      string
	}{
		{"json object", JSON, []byte(`{"type":3,"invocationId":"s1","result":{"n":1, "s":"x"}}`), true, `{"n":1, "s":"x"}`, ""},
		{"json null", JSON, []byte(`{"type":3,"invocationId":"s1","result":null}`), true, `null`, ""},
		{"json void", JSON, []byte(`{"type":3,"invocationId":"s1"}`), false, "", ""},
		{"json error", JSON, []byte(`{"type":3,"invocationId":"s1","error":"boom"}`), false, "", "boom"},
		{"msgpack value", MessagePack, mp([]any{3, mpMap{}, "s1", 3, mpMap{{"n", 1}, {"s", "x"}}}), true, `{"n":1,"s":"x"}`, ""},
		{"msgpack void", MessagePack, mp([]any{3, mpMap{}, "s1", 2}), false, "", ""},
		{"msgpack error", MessagePack, mp([]any{3, mpMap{}, "s1", 1, "boom"}), false, "", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.proto.Decode(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != Completion || m.InvocationID != "s1" || m.HasResult != tt.has || m.Error != tt.err || (len(m.Result) > 0) != tt.has {
				t.Fatalf("decoded %+v", m)
			}
			if !tt.has {
				return
			}
			got, err := tt.proto.ResultJSON([]byte("r="), m.Result)
			if err != nil || string(got) != "r="+tt.wantJSON {
				t.Fatalf("ResultJSON = %q, %v; want %q", got, err, "r="+tt.wantJSON)
			}
		})
	}
}

func TestAppendJSONFromMsgpack(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", mp(nil), `null`},
		{"bools", mp([]any{true, false}), `[true,false]`},
		{"ints exact", mp([]any{math.MaxInt64, math.MinInt64, uint64(math.MaxUint64), -1, 0}),
			`[9223372036854775807,-9223372036854775808,18446744073709551615,-1,0]`},
		{"floats", mp([]any{1.5, -0.25, 1e21, 100.0}), `[1.5,-0.25,1e+21,100]`},
		{"float32", msgp.AppendFloat32(nil, 0.1), `0.1`},
		{"nan and inf become null", mp([]any{math.NaN(), math.Inf(1), math.Inf(-1)}), `[null,null,null]`},
		{"strings escaped", mp("a\"b\\c\n\x00é😀"), `"a\"b\\c\n\u0000é😀"`},
		{"invalid utf-8 replaced", msgp.AppendStringFromBytes(nil, []byte{'a', 0xff, 'b'}), "\"a\uFFFDb\""},
		{"bin is base64", mp(mpBin{0, 1, 2, 0xff}), `"AAEC/w=="`},
		{"map in wire order", mp(mpMap{{"b", 1}, {"a", []any{}}}), `{"b":1,"a":[]}`},
		{"non-string keys", mp(mpMap{{1, "x"}, {true, "y"}, {nil, "z"}, {mpBin{1}, "w"}}), `{"1":"x","true":"y","null":"z","AQ==":"w"}`},
		{"nested", mp([]any{mpMap{{"x", []any{nil, mpMap{}}}}}), `[{"x":[null,{}]}]`},
		{"timestamp", msgp.AppendTime(nil, ts), `"2025-03-04T05:06:07.000000008Z"`},
		{"other extension", []byte{0xd4, 0x07, 0xab}, `{"extType":7,"data":"qw=="}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendJSONFromMsgpack(nil, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("%s is not valid JSON", got)
			}
		})
	}
}

func TestAppendJSONFromMsgpackRejects(t *testing.T) {
	deep := strings.Repeat("\x91", maxMsgpackDepth+2) + "\xc0"
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated string", []byte{0xa3, 'a'}},
		{"truncated array", []byte{0x92, 0x01}},
		{"trailing bytes", []byte{0x01, 0x02}},
		{"reserved prefix", []byte{0xc1}},
		{"too deep", []byte(deep)},
		{"truncated map value", []byte{0x81, 0xa1, 'a'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendJSONFromMsgpack([]byte("keep"), tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if string(got) != "keep" {
				t.Fatalf("dst changed to %q", got)
			}
		})
	}
}

// FuzzAppendJSONFromMsgpack: whatever the input, the converter returns valid JSON or an error
// wrapping ErrMalformed, never panics, and agrees with msgp's own reading on what one value is.
func FuzzAppendJSONFromMsgpack(f *testing.F) {
	for _, seed := range [][]byte{
		mp(nil), mp([]any{1, "a", true, 1.5, mpBin{1}}), mp(mpMap{{"k", []any{mpMap{{1, 2}}}}}),
		msgp.AppendTime(nil, time.Unix(1, 2)), {0xd4, 0x07, 0xab}, {0xc7, 0x00, 0x05},
		msgp.AppendFloat32(nil, float32(math.Inf(1))), {0xdd, 0xff, 0xff, 0xff, 0xff},
		[]byte(strings.Repeat("\x91", 200)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := AppendJSONFromMsgpack(nil, in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("% x gave invalid JSON %q", in, got)
		}
		if rest, err := msgp.Skip(in); err != nil || len(rest) != 0 {
			t.Fatalf("% x converted, but msgp reads it as one value: rest %d, %v", in, len(rest), err)
		}
	})
}
