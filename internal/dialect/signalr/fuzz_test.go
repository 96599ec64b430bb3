package signalr_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Fuzz modes: which protocol, transport and protocol version carry the
// fuzzed bytes.
const (
	fuzzMessagePack = 1 << iota // else json
	fuzzPost                    // long polling POST, else a WebSocket message
	fuzzStateful                // version 2 with stateful reconnect (WebSockets)
)

// FuzzClientInput feeds arbitrary bytes to the server after a valid
// handshake, as a WebSocket message or a POST body, and then checks that the
// server still serves a second, healthy connection.
func FuzzClientInput(f *testing.F) {
	for _, seed := range []struct {
		data string
		mode uint8
	}{
		{`{"type":1,"invocationId":"1","target":"t","arguments":[1]}` + rs, 0},
		{`{"type":1,"target":"t","arguments":[]}` + rs + `{"type":6}` + rs, fuzzPost},
		{`{"type":4,"invocationId":"1","target":"t","arguments":[]}` + rs, 0},
		{`{"type":7,"error":"bye"}` + rs, 0},
		{`{"type":8,"sequenceId":18446744073709551615}` + rs, fuzzStateful},
		{`{"type":9,"sequenceId":0}` + rs, fuzzStateful},
		{`{"type":9,"sequenceId":1}` + rs + `{"type":1,"invocationId":"x","target":"t","arguments":[]}` + rs, fuzzStateful},
		{`{"type":1,"invocationId":null,"target":"t","arguments":[]}` + rs, 0},
		{`{"type":1,"target":"t","arguments":[` + rs, fuzzPost},
		{`{"type":1,"target":"t",`, 0},
		{rs + rs + rs, 0},
		{"\xff\xfe\x00", 0},
		{"\x11\x96\x01\x80\xa3xyz\xa6method\x91\x2a\x90", fuzzMessagePack},
		{"\x11\x96\x01\x80\xa3xyz\xa6method\x91\x2a\x90", fuzzMessagePack | fuzzPost},
		{"\x03\x92\x09\x05", fuzzMessagePack | fuzzStateful},
		{"\xff\xff\xff\xff\x0f", fuzzMessagePack},
		{"\x05\x95\x01\x80\xc0\xc0\xc0", fuzzMessagePack},
		{"\x02\x91\x06\x02\x91", fuzzMessagePack},
		{"", 0},
	} {
		f.Add([]byte(seed.data), seed.mode)
	}
	s := startServer(f, serverOptions{stateful: true, recovery: 100 * time.Millisecond, maxMessage: 64 << 10})
	tok := s.token(f, "chat", "fuzzer")
	var n int
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		n++
		proto := "json"
		if mode&fuzzMessagePack != 0 {
			proto = "messagepack"
		}
		version := 1
		extra := ""
		if mode&fuzzStateful != 0 {
			version, extra = 2, "&useStatefulReconnect=true"
		}
		handshake := fmt.Sprintf(`{"protocol":%q,"version":%d}`+rs, proto, version)
		neg := s.negotiate(t, "chat", tok, extra)

		if mode&fuzzPost != 0 {
			u := s.clientURL("chat", neg.ConnectionToken, "")
			awaitPoll(t, poll(t, u, tok))
			do(t, http.MethodPost, u, tok, []byte(handshake), nil)
			if r := awaitPoll(t, poll(t, u, tok)); r.body != "{}"+rs {
				t.Fatalf("handshake answer %d %q", r.status, r.body)
			}
			resp, body := do(t, http.MethodPost, u, tok, data, nil)
			if resp.StatusCode >= 500 {
				t.Fatalf("POST of %q: %d %s", data, resp.StatusCode, body)
			}
			do(t, http.MethodDelete, u, tok, nil, nil)
		} else {
			c := mustDialWS(t, s.clientURL("chat", neg.ConnectionToken, tok))
			c.sendText(handshake)
			if f := c.read(); f.data != "{}"+rs {
				t.Fatalf("handshake answer %q", f.data)
			}
			if mode&fuzzMessagePack != 0 {
				c.sendBinary(data)
			} else {
				c.sendText(string(data)) // invalid UTF-8 is a WebSocket error (1007), also fine
			}
			c.conn.Close()
		}

		// Another client is served as usual.
		h := mustDialWS(t, s.clientURL("chat", "", tok))
		h.sendText(`{"protocol":"json","version":1}` + rs)
		h.readText("{}" + rs)
		id := fmt.Sprint("healthy", n)
		h.sendText(`{"type":1,"invocationId":"` + id + `","target":"t","arguments":[]}` + rs)
		h.readText(`{"type":3,"invocationId":"` + id + `"}` + rs)
		h.conn.Close()
	})
}
