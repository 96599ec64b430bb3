package hubproto

import "testing"

// BenchmarkMsgpackAppendInvocation converts a small REST payload for a MessagePack client.
func BenchmarkMsgpackAppendInvocation(b *testing.B) {
	p, err := ParsePayload("application/json", []byte(`{"target":"newMessage","arguments":["user42","hello, world",{"id":17,"tags":["a","b"],"score":0.5}]}`))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Invocation)))
	for b.Loop() {
		if buf, err = MessagePack.AppendInvocation(buf[:0], p.Invocation); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJSONNextDecode splits and decodes a client invocation, as the read path does.
func BenchmarkJSONNextDecode(b *testing.B) {
	frame := []byte(`{"type":1,"invocationId":"12","target":"broadcast","arguments":["user42","hello, world",{"id":17}]}` + "\x1e")
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		msg, _, err := JSON.Next(frame, 32<<10)
		if err != nil {
			b.Fatal(err)
		}
		if m, err := JSON.Decode(msg); err != nil || m.Arguments != 3 {
			b.Fatal(m, err)
		}
	}
}

// BenchmarkMsgpackNextDecode is the MessagePack read path for the same invocation.
func BenchmarkMsgpackNextDecode(b *testing.B) {
	frame, err := MessagePack.AppendInvocation(nil, []byte(`{"type":1,"invocationId":"12","target":"broadcast","arguments":["user42","hello, world",{"id":17}]}`))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		msg, _, err := MessagePack.Next(frame, 32<<10)
		if err != nil {
			b.Fatal(err)
		}
		if m, err := MessagePack.Decode(msg); err != nil || m.Arguments != 3 {
			b.Fatal(m, err)
		}
	}
}

// BenchmarkParsePayloadJSON parses a REST send body.
func BenchmarkParsePayloadJSON(b *testing.B) {
	body := []byte(`{"Target":"newMessage","Arguments":["user42","hello, world",{"id":17,"tags":["a","b"]}]}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParsePayload("application/json; charset=utf-8", body); err != nil {
			b.Fatal(err)
		}
	}
}
