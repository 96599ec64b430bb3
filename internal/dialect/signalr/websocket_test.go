package signalr_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestWebSocketJSONHandshake(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, n := s.connectJSON(t, "chat", "alice", 1, "")
	eventually.True(t, "connected event", 10*time.Second, func() bool { return len(s.up.connects()) == 1 })
	got := s.up.connects()[0]
	if got.ID != n.ConnectionID || got.Hub != "chat" || got.UserID != "alice" {
		t.Fatalf("connected %+v, want conn %s of alice in chat", got, n.ConnectionID)
	}
	if strings.Contains(got.Query, "access_token") || strings.Contains(got.Query, "id=") {
		t.Errorf("client query %q leaks the token or id", got.Query)
	}
	// The client's Ping needs no answer; the next frame is a REST send.
	c.sendText(`{"type":6}` + rs)
	s.send(t, "chat", `{"type":1,"target":"newMessage","arguments":["hi"]}`)
	c.readText(`{"type":1,"target":"newMessage","arguments":["hi"]}` + rs)
}

func TestWebSocketMessagePackHandshake(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	for _, binaryRequest := range []bool{false, true} {
		n := s.negotiate(t, "chat", tok, "")
		c := mustDialWS(t, s.clientURL("chat", n.ConnectionToken, tok))
		req := `{"protocol":"messagepack","version":1}` + rs
		if binaryRequest {
			c.sendBinary([]byte(req))
		} else {
			c.sendText(req) // the JS client sends the request as a string
		}
		c.readBinary([]byte("{}" + rs))
	}
}

func TestHandshakeSplitAcrossFrames(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"js`)
	c.sendText(`on","version":1}` + rs)
	c.readText("{}" + rs)
}

func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	for _, tc := range []struct {
		request string
		answer  string // the whole answer, or its prefix when it ends with "…"
	}{
		{`{"protocol":"xml","version":1}` + rs, `{"error":"Requested protocol 'xml' is not available."}` + rs},
		{`{"protocol":"blazorpack","version":1}` + rs, `{"error":"Requested protocol 'blazorpack' is not available."}` + rs},
		{`{"protocol":"json","version":3}` + rs, `{"error":"The server does not support version 3 of the 'json' protocol."}` + rs},
		{`{"protocol":"json","version":0}` + rs, `{"error":"The server does not support version 0 of the 'json' protocol."}` + rs},
		{"hello" + rs, `{"error":"Handshake request is invalid: …`},
		{`{"protocol":"json"}` + rs, `{"error":"Handshake request is invalid: …`},
		{`{"protocol":1,"version":1}` + rs, `{"error":"Handshake request is invalid: …`},
		{`[]` + rs, `{"error":"Handshake request is invalid: …`},
		{`{"type":1,"target":"x","arguments":[]}` + rs, `{"error":"Handshake request is invalid: …`},
	} {
		n := s.negotiate(t, "chat", tok, "")
		c := mustDialWS(t, s.clientURL("chat", n.ConnectionToken, tok))
		c.sendText(tc.request)
		f := c.read()
		if prefix, ok := strings.CutSuffix(tc.answer, "…"); ok {
			if !strings.HasPrefix(f.data, prefix) || !strings.HasSuffix(f.data, `"}`+rs) {
				t.Errorf("handshake %q answered %q, want %q…", tc.request, f.data, prefix)
			}
		} else if f.data != tc.answer {
			t.Errorf("handshake %q answered %q, want %q", tc.request, f.data, tc.answer)
		}
		if f.binary {
			t.Errorf("handshake %q: error answer in a binary frame", tc.request)
		}
		if ce := c.expectClose(); ce.code != 1000 {
			t.Errorf("handshake %q: close %v, want 1000", tc.request, ce)
		}
		// The session is gone.
		if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("handshake %q: reconnecting with the failed id: %v, want 404", tc.request, err)
		}
	}
	if got := len(s.up.connects()); got != 0 {
		t.Fatalf("%d connected events for failed handshakes", got)
	}
	if got := metrictest.Present(t, s.reg, "switchboard_signalr_sessions"); got != 0 {
		t.Fatalf("sessions gauge %v after failed handshakes, want 0", got)
	}
}

func TestHandshakeAndInvocationInOneFrame(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"json","version":1}` + rs + `{"type":6}` + rs + `{"type":1,"invocationId":"1","target":"echo","arguments":[1]}` + rs)
	c.readText("{}" + rs)
	c.readText(`{"type":3,"invocationId":"1"}` + rs)
	inv := s.up.invocations()
	if len(inv) != 1 || inv[0].target != "echo" || inv[0].body != `{"type":1,"invocationId":"1","target":"echo","arguments":[1]}` {
		t.Fatalf("upstream invocations %+v", inv)
	}
}

func TestInvocationsBatchedAndSplit(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, _ := s.connectJSON(t, "chat", "", 1, "")
	// Two records in one frame, then one record split over two frames.
	c.sendText(`{"type":1,"invocationId":"a","target":"t","arguments":[]}` + rs + `{"type":1,"invocationId":"b","target":"t","arguments":[]}` + rs + `{"type":1,"invocationId":"c",`)
	c.sendText(`"target":"t","arguments":[]}` + rs)
	for _, id := range []string{"a", "b", "c"} {
		c.readText(`{"type":3,"invocationId":"` + id + `"}` + rs)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{handshakeTimeout: 50 * time.Millisecond})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	c := mustDialWS(t, s.clientURL("chat", n.ConnectionToken, tok))
	// Nothing is sent: the server closes.
	if ce := c.expectClose(); ce.code != 1000 {
		t.Fatalf("close %v, want 1000", ce)
	}
	c.expectEnd()
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "handshake_timeout"); got != 1 {
		t.Errorf("rejected{handshake_timeout} = %v", got)
	}
	eventually.True(t, "the session to be forgotten", 10*time.Second, func() bool { return metrictest.Present(t, s.reg, "switchboard_signalr_sessions") == 0 })
	if len(s.up.connects()) != 0 || len(s.up.disconnects()) != 0 {
		t.Fatalf("upstream events for a connection without a handshake: %v %v", s.up.connects(), s.up.disconnects())
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{pingInterval: 30 * time.Millisecond})
	tok := s.token(t, "chat", "")

	j, _ := s.connectJSON(t, "chat", "", 1, "")
	j.pings = true
	j.readText(`{"type":6}` + rs) // a hub-protocol Ping (browsers cannot see ping frames)

	m := mustDialWS(t, s.clientURL("chat", "", tok))
	m.pings = true
	m.sendText(`{"protocol":"messagepack","version":1}` + rs)
	m.readBinary([]byte("{}" + rs))
	m.readBinary([]byte{0x02, 0x91, 0x06})
}

func TestSendReachesJSONAndMessagePackClients(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	j, _ := s.connectJSON(t, "chat", "", 1, "")
	m := mustDialWS(t, s.clientURL("chat", "", tok))
	m.sendText(`{"protocol":"messagepack","version":1}` + rs)
	m.readBinary([]byte("{}" + rs))
	// Another hub's client gets nothing.
	other, _ := s.connectJSON(t, "other", "", 1, "")

	s.send(t, "chat", `{"type":1,"target":"t","arguments":[1]}`)
	j.readText(`{"type":1,"target":"t","arguments":[1]}` + rs)
	// [1, {}, nil, "t", [1]] behind its VarInt length.
	m.readBinary([]byte{0x08, 0x95, 0x01, 0x80, 0xc0, 0xa1, 't', 0x91, 0x01})

	s.send(t, "other", `{"type":1,"target":"o","arguments":[]}`)
	other.readText(`{"type":1,"target":"o","arguments":[]}` + rs)
}

func TestSkipNegotiation(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "carol")
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText("{}" + rs)
	eventually.True(t, "connected event", 10*time.Second, func() bool { return len(s.up.connects()) == 1 })
	got := s.up.connects()[0]
	if got.UserID != "carol" || !strings.HasPrefix(got.ID, s.node.ID()+"_") {
		t.Fatalf("connected %+v", got)
	}
	if _, err := s.hub(t, "chat").Conn(got.ID); err != nil {
		t.Fatalf("conn %s not in the hub: %v", got.ID, err)
	}
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[]}`)
	c.readText(`{"type":1,"target":"t","arguments":[]}` + rs)

	// Without a token or a hub, no socket.
	for name, u := range map[string]string{
		"no token": s.clientURL("chat", "", ""),
		"no hub":   s.clientURL("", "", tok),
	} {
		if _, err := dialWS(t, u, nil); err == nil {
			t.Errorf("%s: upgraded", name)
		}
	}
	if _, err := dialWS(t, s.clientURL("chat", "", "bad"), http.Header{}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v, want 401", err)
	}
}

// Client messages the server does not act on are ignored; undecodable ones
// close the connection with a Close message, and other clients go on.
func TestBadClientMessages(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	healthy, _ := s.connectJSON(t, "chat", "", 1, "")

	c, _ := s.connectJSON(t, "chat", "", 1, "")
	for _, ignored := range []string{
		`{"type":42}`,
		`{"type":99999999999999999999}`,
		`{"type":2,"invocationId":"x","item":1}`,
		`{"type":3,"invocationId":"x","result":1}`,
		`{"type":5,"invocationId":"x"}`,
		`{"type":8,"sequenceId":3}`,
		`{"type":9,"sequenceId":3}`,
		`{"type":6,"extra":{"nested":[1,2]}}`,
		` {"type":6} `,
	} {
		c.sendText(ignored + rs)
	}
	c.sendText(`{"type":1,"invocationId":"ok","target":"t","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"ok"}` + rs)

	for _, bad := range []string{
		`not json`,
		`{"type":1,"target":"t"}`,
		`{"type":"1"}`,
		`{"type":1,"invocationId":null,"target":"t","arguments":[]}`,
		`[]`,
		``,
	} {
		c, _ := s.connectJSON(t, "chat", "", 1, "")
		c.sendText(bad + rs)
		f := c.read()
		if !strings.HasPrefix(f.data, `{"type":7,"error":"Connection closed with an error.`) || strings.Contains(f.data, "allowReconnect") {
			t.Errorf("message %q: answer %q, want a Close with an error", bad, f.data)
		}
		if ce := c.expectClose(); ce.code != 1000 {
			t.Errorf("message %q: close %v, want 1000", bad, ce)
		}
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "malformed"); got != 6 {
		t.Errorf("rejected{malformed} = %v, want 6", got)
	}
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[]}`)
	healthy.readText(`{"type":1,"target":"t","arguments":[]}` + rs)
}

func TestMessagePackBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	for _, bad := range [][]byte{
		{0x01, 0xc1},                         // a reserved msgpack byte
		{0x03, 0x92, 0xa1, 'x'},              // type is a string
		{0x02, 0x91, 0xc0},                   // type nil
		{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // a VarInt longer than 5 bytes
	} {
		c := mustDialWS(t, s.clientURL("chat", "", tok))
		c.sendText(`{"protocol":"messagepack","version":1}` + rs)
		c.readBinary([]byte("{}" + rs))
		c.sendBinary(bad)
		f := c.read()
		msg, err := hubproto.MessagePack.Decode(frameBody(t, f))
		if err != nil || msg.Kind != hubproto.Close || !strings.HasPrefix(msg.Error, "Connection closed with an error.") || msg.AllowReconnect {
			t.Errorf("input % x: answer % x (%+v, %v), want a Close with an error", bad, f.data, msg, err)
		}
		c.expectClose()
	}
	// Unknown types are ignored.
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"messagepack","version":1}` + rs)
	c.readBinary([]byte("{}" + rs))
	c.sendBinary([]byte{0x02, 0x91, 0x2a}) // [42]
	c.sendBinary([]byte{0x02, 0x91, 0x06}) // Ping
	// [1, {}, "xyz", "method", [42], []]
	c.sendBinary([]byte{0x11, 0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90})
	c.readBinary([]byte{0x08, 0x94, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x02})
}

// frameBody strips the VarInt length of one framed MessagePack message.
func frameBody(t testing.TB, f frame) []byte {
	t.Helper()
	msg, rest, err := hubproto.MessagePack.Next([]byte(f.data), 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("frame % x: %v (rest % x)", f.data, err, rest)
	}
	return msg
}
