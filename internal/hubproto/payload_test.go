package hubproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParsePayloadJSON(t *testing.T) {
	tests := []struct {
		name, contentType, body, want, target string
	}{
		{"camelCase", "application/json", `{"target":"newMessage","arguments":["hi",1]}`,
			`{"type":1,"target":"newMessage","arguments":["hi",1]}`, "newMessage"},
		{"PascalCase from the .NET SDK", "application/json; charset=utf-8", `{"Target":"send","Arguments":[{"A":1}]}`,
			`{"type":1,"target":"send","arguments":[{"A":1}]}`, "send"},
		{"no content type, no arguments", "", `{"target":"t"}`, `{"type":1,"target":"t","arguments":[]}`, "t"},
		{"null arguments", "text/json", `{"target":"t","arguments":null}`, `{"type":1,"target":"t","arguments":[]}`, "t"},
		{"+json media type", "application/vnd.x+json", `{"TARGET":"t","arguments":[]}`, `{"type":1,"target":"t","arguments":[]}`, "t"},
		{"arguments verbatim, exact numbers", "application/json",
			" {\"arguments\": [ 12345678901234567890, 1.0e+2 , \"\\u00e9\" ],\n \"target\": \"t\", \"other\": 1 } ",
			`{"type":1,"target":"t","arguments":[ 12345678901234567890, 1.0e+2 , "\u00e9" ]}`, "t"},
		{"target re-encoded", "application/json", `{"target":"a\u003cb\"c"}`, `{"type":1,"target":"a\u003cb\"c","arguments":[]}`, `a<b"c`},
		{"last duplicate wins", "application/json", `{"target":"a","Target":"b"}`, `{"type":1,"target":"b","arguments":[]}`, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePayload(tt.contentType, []byte(tt.body))
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			if string(p.Invocation) != tt.want || p.Target != tt.target || p.Variants != nil {
				t.Fatalf("got %q target %q variants %q\nwant %q target %q", p.Invocation, p.Target, p.Variants, tt.want, tt.target)
			}
			// The canonical invocation decodes as a JSON hub message.
			m, err := JSON.Decode(p.Invocation)
			if err != nil || m.Kind != Invocation || m.Target != tt.target || m.InvocationID != "" {
				t.Fatalf("canonical invocation decodes to %+v, %v", m, err)
			}
		})
	}
}

func TestParsePayloadErrors(t *testing.T) {
	tests := []struct {
		name, contentType string
		body              []byte
		want              string
		unsupported       bool
	}{
		{"empty body", "application/json", nil, "Message in request body is required.", false},
		{"whitespace body", "application/json", []byte(" \n"), "Message in request body is required.", false},
		{"invalid json", "application/json", []byte(`{"target":`), "Message in request body is not valid JSON.", false},
		{"invalid utf-8", "application/json", []byte("{\"target\":\"t\",\"arguments\":[\"\xff\"]}"), "Message in request body is not valid UTF-8.", false},
		{"array body", "application/json", []byte(`["t"]`), "Message in request body must be a JSON object.", false},
		{"no target", "application/json", []byte(`{"arguments":[]}`), "Target is required.", false},
		{"empty target", "application/json", []byte(`{"target":""}`), "Target is required.", false},
		{"null target", "application/json", []byte(`{"target":null}`), "Target is required.", false},
		{"numeric target", "application/json", []byte(`{"target":5}`), "target must be a string", false},
		{"arguments object", "application/json", []byte(`{"target":"t","arguments":{"a":1}}`), "arguments must be an array", false},
		{"arguments string", "application/json", []byte(`{"target":"t","arguments":"x"}`), "arguments must be an array", false},
		{"text/plain", "text/plain", []byte(`{"target":"t"}`), "Unsupported content type.", true},
		{"garbage content type", "application/json;;=", []byte(`{"target":"t"}`), "Unsupported content type.", true},
		{"empty variants", "application/octet-stream", nil, "Message in request body is required.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePayload(tt.contentType, tt.body)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if errors.Is(err, ErrUnsupportedMediaType) != tt.unsupported {
				t.Fatalf("errors.Is(err, ErrUnsupportedMediaType) = %v", !tt.unsupported)
			}
		})
	}
}

// variantsBody builds the Management SDK's octet-stream body from name/blob pairs.
func variantsBody(pairs ...any) []byte {
	var m mpMap
	for i := 0; i+1 < len(pairs); i += 2 {
		m = append(m, [2]any{pairs[i], pairs[i+1]})
	}
	return mp(m)
}

func TestParsePayloadVariants(t *testing.T) {
	jsonBlob := mpBin(`{"type":1,"target":"t","arguments":[1]}` + "\x1e")
	mpBlob := mpBin(frame(mp([]any{1, mpMap{}, nil, "t", []any{1}})))
	tests := []struct {
		name, contentType string
		body              []byte
		target            string
		names             []string
	}{
		{"both protocols", "application/octet-stream", variantsBody("json", jsonBlob, "messagepack", mpBlob), "t", []string{"json", "messagepack"}},
		{"msgpack only, x-msgpack", "application/x-msgpack", variantsBody("messagepack", mpBlob), "t", []string{"messagepack"}},
		{"unknown protocol kept unvalidated", "application/octet-stream", variantsBody("blazorpack", mpBin("??"), "JSON", jsonBlob), "t", []string{"blazorpack", "json"}},
		{"target from first blob", "application/octet-stream",
			variantsBody("json", mpBin(`{"type":1,"target":"first","arguments":[]}`+"\x1e"), "messagepack", mpBlob), "first", []string{"json", "messagepack"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePayload(tt.contentType, tt.body)
			if err != nil {
				t.Fatalf("ParsePayload: %v", err)
			}
			if p.Target != tt.target || !bytes.Equal(p.Variants, tt.body) || p.Invocation != nil {
				t.Fatalf("got target %q, variants %d bytes, invocation %q", p.Target, len(p.Variants), p.Invocation)
			}
			v, err := ParseVariants(p.Variants)
			if err != nil {
				t.Fatalf("ParseVariants: %v", err)
			}
			if len(v) != len(tt.names) {
				t.Fatalf("ParseVariants returned %d entries, want %v", len(v), tt.names)
			}
			for _, name := range tt.names {
				blob, ok := v[name]
				if !ok {
					t.Fatalf("ParseVariants lacks %q", name)
				}
				if p, known := Lookup(name); known {
					if _, err := decodeFramedInvocation(p, blob); err != nil {
						t.Fatalf("blob %q: %v", name, err)
					}
				}
			}
		})
	}
}

func TestParsePayloadVariantsErrors(t *testing.T) {
	jsonBlob := mpBin(`{"type":1,"target":"t","arguments":[1]}` + "\x1e")
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"not a map", mp([]any{"json"}), "must be a MessagePack map"},
		{"empty map", mp(mpMap{}), "at least one protocol payload"},
		{"key not a string", variantsBody(1, jsonBlob), "must be a MessagePack string"},
		{"value a string", variantsBody("json", `{"type":1,"target":"t","arguments":[]}`+"\x1e"), "must be MessagePack binary"},
		{"duplicate", variantsBody("json", jsonBlob, "Json", jsonBlob), "appears more than once"},
		{"trailing bytes", append(variantsBody("json", jsonBlob), 0xC0), "1 unexpected bytes"},
		{"truncated", variantsBody("json", jsonBlob)[:10], "MessagePack binary"},
		{"entry count lies", mustHex("DF FF FF FF FF A4 6A 73 6F 6E"), "MessagePack binary"},
		{"json blob unframed", variantsBody("json", mpBin(`{"type":1,"target":"t","arguments":[]}`)), `"json" payload is not a framed invocation: the frame is incomplete`},
		{"json blob two messages", variantsBody("json", mpBin(`{"type":6}`+"\x1e"+`{"type":6}`+"\x1e")), "more than one message"},
		{"json blob invalid utf-8", variantsBody("json", mpBin("{\"type\":1,\"target\":\"t\",\"arguments\":[\"\xff\"]}\x1e")), "not valid UTF-8"},
		{"json blob a ping", variantsBody("json", mpBin(`{"type":6}`+"\x1e")), "message type is 6"},
		{"json blob bad", variantsBody("json", mpBin(`{"type":1}`+"\x1e")), "missing required property 'target'"},
		{"msgpack blob unframed", variantsBody("messagepack", mpBin(mp([]any{1, mpMap{}, nil, "t", []any{}}))), `"messagepack" payload is not a framed invocation`},
		{"msgpack blob empty target", variantsBody("messagepack", mpBin(frame(mp([]any{1, mpMap{}, nil, "", []any{}})))), "Target is required."},
		{"only unknown protocols", variantsBody("blazorpack", mpBin("x")), `must contain a "json" or "messagepack" payload`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePayload("application/octet-stream", tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
