package hubproto

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHandshake(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     HandshakeRequest
		wantRest string
	}{
		{"json v1", `{"protocol":"json","version":1}` + "\x1e", HandshakeRequest{"json", 1}, ""},
		{"messagepack v2 with batched ping", `{"protocol":"messagepack","version":2}` + "\x1e\x02\x91\x06",
			HandshakeRequest{"messagepack", 2}, "\x02\x91\x06"},
		{"json batched messages", `{"protocol":"json","version":1}` + "\x1e" + `{"type":6}` + "\x1e",
			HandshakeRequest{"json", 1}, `{"type":6}` + "\x1e"},
		{"whitespace, unknown property", " {\"version\" : 1, \"x\":[1], \"protocol\":\"json\"}\n\x1e", HandshakeRequest{"json", 1}, ""},
		{"unsupported protocol parses", `{"protocol":"xyz","version":99}` + "\x1e", HandshakeRequest{"xyz", 99}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rest, err := ParseHandshake([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseHandshake: %v", err)
			}
			if got != tt.want || string(rest) != tt.wantRest {
				t.Fatalf("got %+v rest %q, want %+v rest %q", got, rest, tt.want, tt.wantRest)
			}
		})
	}
}

func TestParseHandshakeErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
		text    string
	}{
		{"no separator", `{"protocol":"json","version":1}`, ErrIncomplete, ""},
		{"empty", "", ErrIncomplete, ""},
		{"empty record", "\x1e", ErrMalformed, "empty record"},
		{"bad json", `{"protocol":"json",` + "\x1e", ErrMalformed, "not valid JSON"},
		{"array", `[1]` + "\x1e", ErrMalformed, "a JSON array, not an object"},
		{"missing protocol", `{"version":1}` + "\x1e", ErrMalformed, "missing required property 'protocol'"},
		{"protocol number", `{"protocol":1,"version":1}` + "\x1e", ErrMalformed, "expected 'protocol' to be a string, got number"},
		{"missing version", `{"protocol":"json"}` + "\x1e", ErrMalformed, "missing required property 'version'"},
		{"version string", `{"protocol":"json","version":"1"}` + "\x1e", ErrMalformed, "expected 'version' to be an integer"},
		{"version fraction", `{"protocol":"json","version":1.5}` + "\x1e", ErrMalformed, "expected 'version' to be an integer"},
		{"version huge", `{"protocol":"json","version":99999999999}` + "\x1e", ErrMalformed, "out of range"},
		{"names are case-sensitive", `{"Protocol":"json","version":1}` + "\x1e", ErrMalformed, "missing required property 'protocol'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseHandshake([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not mention %q", err, tt.text)
			}
		})
	}
}

func TestAppendHandshakeResponse(t *testing.T) {
	tests := []struct {
		errMsg, want string
	}{
		{"", "{}\x1e"},
		{"Requested protocol 'xyz' is not available.", `{"error":"Requested protocol 'xyz' is not available."}` + "\x1e"},
		{`say "hi"` + "\n", `{"error":"say \"hi\"\n"}` + "\x1e"},
	}
	for _, tt := range tests {
		if got := AppendHandshakeResponse([]byte("p"), tt.errMsg); string(got) != "p"+tt.want {
			t.Errorf("AppendHandshakeResponse(%q) = %q, want %q", tt.errMsg, got, "p"+tt.want)
		}
	}
}
