package hubproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/tinylib/msgp/msgp"
)

var jsonSeeds = []string{
	`{"type":1,"target":"newMessage","arguments":["hi"]}`,
	`{"type":1,"invocationId":"0","target":"broadcast","arguments":["hi",{"a":[1,"]"]}],"streamIds":["1"],"headers":{"a":"b"}}`,
	`{"type":4,"invocationId":"7","target":"count","arguments":[10]}`,
	`{"type":2,"invocationId":"1","item":{"x":1}}`,
	`{"type":3,"invocationId":"0","result":null}`,
	`{"type":3,"invocationId":"0","error":"Invocation failed, status code 404"}`,
	`{"type":5,"invocationId":"3"}`,
	`{"type":6}`,
	`{"type":7,"error":"Connection closed with an error.","allowReconnect":true}`,
	`{"type":8,"sequenceId":1394}`,
	`{"type":9,"sequenceId":1}`,
	`{"t\u0079pe":1,"target":"caf\u00e9","arguments":[]}`,
	`{"type":1,"target":"x"`,
}

// FuzzJSONNextDecode splits arbitrary input into records and decodes each. Whatever Decode
// accepts must agree with encoding/json's reading of the same object.
func FuzzJSONNextDecode(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s+"\x1e"+`{"type":6}`+"\x1e"), 0)
	}
	f.Add([]byte("\x1e\x1e{}\x1e"), 3)
	f.Fuzz(func(t *testing.T, buf []byte, maxMessage int) {
		for len(buf) > 0 {
			msg, rest, err := JSON.Next(buf, maxMessage)
			if err != nil {
				if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("Next error %v is neither ErrIncomplete nor ErrTooLarge", err)
				}
				return
			}
			if len(rest) >= len(buf) {
				t.Fatalf("Next did not consume input")
			}
			m, err := JSON.Decode(msg)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode error %v does not wrap ErrMalformed", err)
				}
			} else {
				checkJSONAgainstEncodingJSON(t, msg, m)
			}
			buf = rest
		}
	})
}

func checkJSONAgainstEncodingJSON(t *testing.T, msg []byte, m Message) {
	t.Helper()
	if !bytes.Equal(m.Raw, msg) {
		t.Fatalf("Raw does not alias the message")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(msg, &fields); err != nil {
		t.Fatalf("Decode accepted %q, encoding/json says %v", msg, err)
	}
	if m.Kind != Invocation && m.Kind != StreamInvocation {
		return
	}
	var target string
	if err := json.Unmarshal(fields["target"], &target); err != nil || target != m.Target {
		t.Fatalf("target %q, encoding/json reads %q (%v)", m.Target, target, err)
	}
	var args []json.RawMessage
	if err := json.Unmarshal(fields["arguments"], &args); err != nil || len(args) != m.Arguments {
		t.Fatalf("%d arguments, encoding/json reads %d (%v)", m.Arguments, len(args), err)
	}
	if raw, ok := fields["invocationId"]; ok {
		var id string
		if err := json.Unmarshal(raw, &id); err != nil || id != m.InvocationID {
			t.Fatalf("invocationId %q, encoding/json reads %q (%v)", m.InvocationID, id, err)
		}
	}
}

// FuzzMsgpackNextDecode splits arbitrary input into VarInt frames and decodes each. Whatever
// Decode accepts must be exactly one well-formed MessagePack value.
func FuzzMsgpackNextDecode(f *testing.F) {
	f.Add(mustHex("11 96 01 80 A3 78 79 7A A6 6D 65 74 68 6F 64 91 2A 90 02 91 06"), 0)
	f.Add(frame(mp([]any{1, mpMap{{"k", "v"}}, nil, "t", []any{1, "x", []any{nil}}, []any{"s"}})), 100)
	f.Add(frame(mp([]any{3, mpMap{}, "0", 1, "boom"})), 0)
	f.Add(frame(mp([]any{3, mpMap{}, "0", 3, mpMap{{"a", 1.5}}})), 0)
	f.Add(frame(mp([]any{7, "bye", true})), 0)
	f.Add(frame(mp([]any{8, 1394})), 0)
	f.Add(frame(mp([]any{2, mpMap{}, "1", []any{}})), 0)
	f.Add(mustHex("06 95 01 DF FF FF FF FF"), 0)
	f.Add(mustHex("FF FF FF FF 07"), 0)
	f.Fuzz(func(t *testing.T, buf []byte, maxMessage int) {
		for len(buf) > 0 {
			msg, rest, err := MessagePack.Next(buf, maxMessage)
			if err != nil {
				if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("Next error %v is not a sentinel", err)
				}
				return
			}
			if len(rest) >= len(buf) {
				t.Fatalf("Next did not consume input")
			}
			m, err := MessagePack.Decode(msg)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Decode error %v does not wrap ErrMalformed", err)
				}
			} else if m.Kind >= Invocation && m.Kind <= Sequence {
				if after, err := msgp.Skip(msg); err != nil || len(after) != 0 {
					t.Fatalf("Decode accepted % X, which is not one MessagePack value (%v)", msg, err)
				}
			}
			buf = rest
		}
	})
}

func FuzzParseHandshake(f *testing.F) {
	f.Add([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	f.Add([]byte(`{"protocol":"messagepack","version":2}` + "\x1e\x02\x91\x06"))
	f.Add([]byte(`{"protocol":"json","version":1.0}` + "\x1e"))
	f.Add([]byte(`{"protocol":"json"`))
	f.Fuzz(func(t *testing.T, buf []byte) {
		req, rest, err := ParseHandshake(buf)
		if err != nil {
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not a sentinel", err)
			}
			return
		}
		i := bytes.IndexByte(buf, RecordSeparator)
		if !bytes.Equal(rest, buf[i+1:]) {
			t.Fatalf("rest is not what follows the first separator")
		}
		// Names are case-sensitive, so compare with encoding/json's exact-key view.
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(buf[:i], &fields); err != nil {
			t.Fatalf("accepted %q that encoding/json rejects: %v", buf[:i], err)
		}
		var protocol string
		var version int
		if json.Unmarshal(fields["protocol"], &protocol) != nil || json.Unmarshal(fields["version"], &version) != nil ||
			protocol != req.Protocol || version != req.Version {
			t.Fatalf("parsed %+v, encoding/json reads %q %d", req, protocol, version)
		}
	})
}

func FuzzParsePayload(f *testing.F) {
	f.Add("application/json", []byte(`{"target":"newMessage","arguments":["hi",1]}`))
	f.Add("application/json; charset=utf-8", []byte(`{"Target":"send","Arguments":[{"A":1}]}`))
	f.Add("", []byte(`{"target":"t","arguments":null}`))
	f.Add("application/octet-stream", variantsBody("json", mpBin(`{"type":1,"target":"t","arguments":[1]}`+"\x1e"),
		"messagepack", mpBin(frame(mp([]any{1, mpMap{}, nil, "t", []any{1}})))))
	f.Add("application/x-msgpack", mustHex("DF FF FF FF FF A4 6A 73 6F 6E"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		p, err := ParsePayload(contentType, body)
		if err != nil {
			return
		}
		if p.Target == "" {
			t.Fatalf("accepted a payload without target")
		}
		if p.Invocation != nil {
			m, err := JSON.Decode(p.Invocation)
			if err != nil || m.Kind != Invocation || m.Target != p.Target {
				t.Fatalf("canonical invocation %q decodes to %+v, %v", p.Invocation, m, err)
			}
			framed, err := MessagePack.AppendInvocation(nil, p.Invocation)
			if err != nil {
				t.Fatalf("converting %q: %v", p.Invocation, err)
			}
			checkMsgpackInvocation(t, framed, m.Target, m.Arguments)
			return
		}
		v, err := ParseVariants(p.Variants)
		if err != nil || len(v) == 0 {
			t.Fatalf("ParseVariants of an accepted body: %v", err)
		}
	})
}

func FuzzParseVariants(f *testing.F) {
	f.Add(variantsBody("json", mpBin(`{"type":1,"target":"t","arguments":[1]}`+"\x1e")))
	f.Add(variantsBody("blazorpack", mpBin("x"), "messagepack", mpBin(frame(mp([]any{1, mpMap{}, nil, "t", []any{}})))))
	f.Add(mustHex("DF FF FF FF FF"))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := ParseVariants(body)
		if err != nil {
			return
		}
		for name, blob := range v {
			if len(blob) > 0 && !bytes.Contains(body, blob) {
				t.Fatalf("blob %q is not part of the body", name)
			}
		}
	})
}

// FuzzJSONToMsgpack checks the round trip of REST arguments to MessagePack clients: converting
// then decoding gives the same target and argument count, and every converted value is one
// MessagePack value.
func FuzzJSONToMsgpack(f *testing.F) {
	f.Add("newMessage", `["hi",1,-2,3.5,true,null,{"a":[1,{}]},18446744073709551615,1e400]`)
	f.Add("t", `[]`)
	f.Add("caf\u00e9", `["\u00e9\ud83d\ude00", [[[]]], {"":""}]`)
	f.Fuzz(func(t *testing.T, target, args string) {
		body, _ := json.Marshal(map[string]json.RawMessage{"target": mustJSON(target), "arguments": json.RawMessage(args)})
		if body == nil {
			return // args is not valid JSON
		}
		p, err := ParsePayload("application/json", body)
		if err != nil {
			return
		}
		var list []json.RawMessage
		if err := json.Unmarshal(p.Invocation, &struct {
			Arguments *[]json.RawMessage `json:"arguments"`
		}{&list}); err != nil {
			t.Fatalf("canonical invocation %q: %v", p.Invocation, err)
		}
		framed, err := MessagePack.AppendInvocation(nil, p.Invocation)
		if err != nil {
			t.Fatalf("converting %q: %v", p.Invocation, err)
		}
		checkMsgpackInvocation(t, framed, p.Target, len(list))
		jsonFramed, err := JSON.AppendInvocation(nil, p.Invocation)
		if err != nil {
			t.Fatal(err)
		}
		msg, rest, err := JSON.Next(jsonFramed, 0)
		if err != nil || len(rest) != 0 {
			t.Fatalf("JSON frame: %v", err)
		}
		if m, err := JSON.Decode(msg); err != nil || m.Target != p.Target || m.Arguments != len(list) {
			t.Fatalf("JSON round trip: %+v, %v", m, err)
		}
	})
}

func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

func checkMsgpackInvocation(t *testing.T, framed []byte, target string, args int) {
	t.Helper()
	msg, rest, err := MessagePack.Next(framed, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("converted frame % X: %v, %d bytes left", framed, err, len(rest))
	}
	m, err := MessagePack.Decode(msg)
	if err != nil {
		t.Fatalf("converted message % X: %v", msg, err)
	}
	if m.Kind != Invocation || m.Target != target || m.Arguments != args {
		t.Fatalf("converted message decodes to kind %v target %q args %d, want target %q args %d", m.Kind, m.Target, m.Arguments, target, args)
	}
}
