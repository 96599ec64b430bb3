package hubproto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// frame prefixes body with its VarInt length, the way every MessagePack encoder here does.
func frame(body []byte) []byte {
	dst, start := beginFrame(nil)
	dst = append(dst, body...)
	return endFrame(dst, start)
}

func TestMsgpackFramingSpecVector(t *testing.T) {
	// Spec §6.1: bodies "Hello\nWorld" and 01 02. The spec's bytes spell the text in lower case
	// (68 = 'h', 77 = 'w'), as the ASP.NET HubProtocol.md example does; the bytes are what counts.
	want := []byte{0x0B, 0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x0A, 0x77, 0x6F, 0x72, 0x6C, 0x64, 0x02, 0x01, 0x02}
	got := append(frame([]byte("hello\nworld")), frame([]byte{0x01, 0x02})...)
	if !bytes.Equal(got, want) {
		t.Fatalf("framed = % X, want % X", got, want)
	}
	msg, rest, err := MessagePack.Next(got, 0)
	if err != nil || string(msg) != "hello\nworld" {
		t.Fatalf("first Next = %q, %v", msg, err)
	}
	msg, rest, err = MessagePack.Next(rest, 0)
	if err != nil || !bytes.Equal(msg, []byte{1, 2}) || len(rest) != 0 {
		t.Fatalf("second Next = % X, rest % X, %v", msg, rest, err)
	}
}

func TestAppendVarint(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x00}},
		{0x7F, []byte{0x7F}},
		{0x80, []byte{0x80, 0x01}},
		{0x3FFF, []byte{0xFF, 0x7F}},
		{0x4000, []byte{0x80, 0x80, 0x01}},
		{1<<31 - 1, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0x07}},
	}
	for _, tt := range tests {
		if got := appendVarint(nil, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("appendVarint(%d) = % X, want % X", tt.n, got, tt.want)
		}
	}
}

func TestEndFrameLongBody(t *testing.T) {
	// A body of 300 bytes needs a two-byte prefix; endFrame must move the body without loss.
	body := bytes.Repeat([]byte("abcdefghij"), 30)
	got := frame(body)
	if !bytes.Equal(got[:2], []byte{0xAC, 0x02}) || !bytes.Equal(got[2:], body) {
		t.Fatalf("frame(300 bytes) = % X…", got[:4])
	}
	// Appending to a non-empty dst keeps what was there.
	dst, start := beginFrame([]byte("keep"))
	dst = endFrame(append(dst, 0x91, 0x06), start)
	if string(dst) != "keep\x02\x91\x06" {
		t.Fatalf("frame after prefix = % X", dst)
	}
}

func TestMsgpackNextErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		text    string
	}{
		{"empty", nil, 0, ErrIncomplete, ""},
		{"prefix continues", []byte{0x80}, 0, ErrIncomplete, ""},
		{"body short", []byte{0x03, 0x91}, 0, ErrIncomplete, ""},
		{"six byte prefix", []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, ErrMalformed, "longer than 5 bytes"},
		{"over 2 GB", []byte{0x80, 0x80, 0x80, 0x80, 0x08}, 0, ErrMalformed, "over 2 GB"},
		{"too large", []byte{0x81, 0x01}, 128, ErrTooLarge, "129 bytes, the limit is 128"},
		{"too large before body arrives", []byte{0xFF, 0xFF, 0xFF, 0xFF, 0x07}, 1 << 20, ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := MessagePack.Next(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next(% X) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not mention %q", err, tt.text)
			}
		})
	}
	// Exactly at the limit is allowed; a 5-byte prefix with 7 in the last byte is legal.
	if _, _, err := MessagePack.Next([]byte{0x02, 0x91, 0x06}, 2); err != nil {
		t.Fatalf("message at the limit: %v", err)
	}
	if _, _, err := MessagePack.Next([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0x07}, 0); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("2 GB - 1 prefix: %v, want ErrIncomplete", err)
	}
}

func TestJSONNext(t *testing.T) {
	buf := []byte(`{"type":6}` + "\x1e" + `{"type":1,"target":"a","arguments":[]}` + "\x1e" + `{"ty`)
	var got []string
	for {
		msg, rest, err := JSON.Next(buf, 0)
		if errors.Is(err, ErrIncomplete) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(msg))
		buf = rest
	}
	want := []string{`{"type":6}`, `{"type":1,"target":"a","arguments":[]}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages = %q, want %q", got, want)
	}
	if string(buf) != `{"ty` {
		t.Fatalf("left over = %q", buf)
	}
}

func TestJSONNextLimit(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		wantErr error
	}{
		{"at limit", `{"type":6}` + "\x1e", 10, nil},
		{"over limit", `{"type":6}` + "\x1e", 9, ErrTooLarge},
		{"unterminated within limit", `{"type":6}`, 10, ErrIncomplete},
		{"unterminated over limit", `{"type":6}`, 9, ErrTooLarge},
		{"no limit", strings.Repeat(" ", 1000) + "\x1e", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := JSON.Next([]byte(tt.in), tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		want   Protocol
		binary bool
	}{
		{"json", JSON, false},
		{"JSON", JSON, false},
		{"messagepack", MessagePack, true},
		{"MessagePack", MessagePack, true},
		{"blazorpack", nil, false},
		{"", nil, false},
	}
	for _, tt := range tests {
		p, ok := Lookup(tt.name)
		if ok != (tt.want != nil) || p != tt.want {
			t.Errorf("Lookup(%q) = %v, %v", tt.name, p, ok)
			continue
		}
		if ok && (p.Binary() != tt.binary || !strings.EqualFold(p.Name(), tt.name)) {
			t.Errorf("Lookup(%q): Name %q Binary %v", tt.name, p.Name(), p.Binary())
		}
	}
}

func TestKindTrackable(t *testing.T) {
	trackable := map[Kind]bool{Invocation: true, StreamItem: true, Completion: true, StreamInvocation: true, CancelInvocation: true}
	for k := Kind(0); k < 12; k++ {
		if got := k.Trackable(); got != trackable[k] {
			t.Errorf("%v.Trackable() = %v", k, got)
		}
	}
	if Invocation.String() != "invocation" || Kind(42).String() != "unknown(42)" {
		t.Errorf("String: %q %q", Invocation, Kind(42))
	}
}
