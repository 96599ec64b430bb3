package hubproto

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

func TestMsgpackAppendInvocation(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []byte // unframed body
	}{
		{"spec style [1,{},nil,\"t\",[1]]", `{"type":1,"target":"t","arguments":[1]}`, mustHex("95 01 80 C0 A1 74 91 01")},
		{"no arguments", `{"type":1,"target":"method"}`, mp([]any{1, mpMap{}, nil, "method", []any{}})},
		{"invocation id kept", `{"type":1,"invocationId":"xyz","target":"method","arguments":[42]}`,
			mp([]any{1, mpMap{}, "xyz", "method", []any{42}})},
		{"scalars", `{"type":1,"target":"t","arguments":["s",true,false,null,-7,0,1.5,-0.25]}`,
			mp([]any{1, mpMap{}, nil, "t", []any{"s", true, false, nil, -7, 0, 1.5, -0.25}})},
		{"integer widths", `{"type":1,"target":"t","arguments":[9223372036854775807,-9223372036854775808,18446744073709551615,18446744073709551616]}`,
			mp([]any{1, mpMap{}, nil, "t", []any{math.MaxInt64, math.MinInt64, uint64(math.MaxUint64), 18446744073709551616.0}})},
		{"non-integer notation is float", `{"type":1,"target":"t","arguments":[1e2,1.0,1e400,-1e400]}`,
			mp([]any{1, mpMap{}, nil, "t", []any{100.0, 1.0, math.Inf(1), math.Inf(-1)}})},
		{"nested containers keep order", `{"type":1,"target":"t","arguments":[{"b":[1,{"x":[]}],"a":{}},[[],[null]]]}`,
			mp([]any{1, mpMap{}, nil, "t", []any{
				mpMap{{"b", []any{1, mpMap{{"x", []any{}}}}}, {"a", mpMap{}}},
				[]any{[]any{}, []any{nil}},
			}})},
		{"escaped strings decoded", `{"type":1,"target":"caf\u00e9","arguments":["a\nb\u0000\ud83d\ude00"]}`,
			mp([]any{1, mpMap{}, nil, "café", []any{"a\nb\x00😀"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MessagePack.AppendInvocation([]byte{0xAA}, []byte(tt.in))
			if err != nil {
				t.Fatalf("AppendInvocation: %v", err)
			}
			want := append([]byte{0xAA}, frame(tt.want)...)
			if !bytes.Equal(got, want) {
				t.Fatalf("got  % X\nwant % X", got, want)
			}
		})
	}
}

func TestMsgpackAppendInvocationLargeArgs(t *testing.T) {
	// 200 arguments and a 70 000-byte string need 16- and 32-bit headers and a 3-byte prefix.
	var sb strings.Builder
	sb.WriteString(`{"type":1,"target":"t","arguments":["` + strings.Repeat("x", 70000) + `"`)
	for i := 0; i < 199; i++ {
		sb.WriteString(",1")
	}
	sb.WriteString("]}")
	got, err := MessagePack.AppendInvocation(nil, []byte(sb.String()))
	if err != nil {
		t.Fatal(err)
	}
	msg, rest, err := MessagePack.Next(got, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Next: %v", err)
	}
	m, err := MessagePack.Decode(msg)
	if err != nil || m.Target != "t" || m.Arguments != 200 {
		t.Fatalf("Decode = %+v, %v", m, err)
	}
	_, after, _ := msgp.ReadArrayHeaderBytes(msg)
	for range 4 {
		after, _ = msgp.Skip(after)
	}
	args, _, err := msgp.ReadIntfBytes(after)
	if err != nil {
		t.Fatal(err)
	}
	list := args.([]any)
	if s, _ := list[0].(string); len(s) != 70000 || !reflect.DeepEqual(list[199], int64(1)) {
		t.Fatalf("arguments decoded wrong: first %d bytes, last %#v", len(s), list[199])
	}
}

func TestMsgpackAppendInvocationErrors(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`, `{"type":1,"arguments":[]}`, `{"type":1,"target":"","arguments":[]}`,
		`{"type":1,"target":5}`, `{"type":1,"target":"t","arguments":{}}`, `{"type":1,"target":"t","invocationId":1}`,
	} {
		dst, err := MessagePack.AppendInvocation([]byte("keep"), []byte(in))
		if err == nil || string(dst) != "keep" {
			t.Errorf("AppendInvocation(%q) = % X, %v; want an error and dst untouched", in, dst, err)
		}
	}
}

func TestWithHeadersBothProtocols(t *testing.T) {
	inv := []byte(`{"type":1,"target":"t","arguments":[1]}`)
	got := WithHeaders(inv, [][2]string{{"offset", "12"}, {"epoch", "00ab"}})
	want := `{"headers":{"offset":"12","epoch":"00ab"},"type":1,"target":"t","arguments":[1]}`
	if string(got) != want {
		t.Fatalf("WithHeaders = %s, want %s", got, want)
	}
	if string(WithHeaders(inv, nil)) != string(inv) {
		t.Fatal("no headers must leave the invocation alone")
	}
	j, err := JSON.AppendInvocation(nil, got)
	if err != nil || string(j) != want+"\x1e" {
		t.Fatalf("json frame %q, %v", j, err)
	}
	b, err := MessagePack.AppendInvocation(nil, got)
	if err != nil {
		t.Fatal(err)
	}
	msg, rest, err := MessagePack.Next(b, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("msgpack frame: %v, %d bytes left", err, len(rest))
	}
	m, err := MessagePack.Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != Invocation || m.Target != "t" || m.Arguments != 1 || m.Headers["offset"] != "12" || m.Headers["epoch"] != "00ab" || len(m.Headers) != 2 {
		t.Fatalf("decoded %+v", m)
	}
	if _, err := MessagePack.AppendInvocation(nil, []byte(`{"headers":[1],"target":"t"}`)); err == nil {
		t.Fatal("headers that are not an object were accepted")
	}
}
