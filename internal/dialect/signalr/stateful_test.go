package signalr_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func invocation(i int) string { return fmt.Sprintf(`{"type":1,"target":"m","arguments":[%d]}`, i) }

// connectStateful negotiates stateful reconnect and completes a version 2
// JSON handshake over WebSockets; it returns the client and the URL to
// reconnect to.
func connectStateful(t *testing.T, s *testServer, user string) (*wsClient, string, negotiateResult) {
	t.Helper()
	tok := s.token(t, "chat", user)
	n := s.negotiate(t, "chat", tok, "&useStatefulReconnect=true")
	if !n.UseStatefulReconnect {
		t.Fatalf("stateful reconnect not granted: %+v", n)
	}
	u := s.clientURL("chat", n.ConnectionToken, tok)
	c := mustDialWS(t, u)
	c.sendText(`{"protocol":"json","version":2}` + rs)
	c.readText("{}" + rs)
	return c, u, n
}

func TestStatefulReconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	c, u, n := connectStateful(t, s, "gina")

	s.send(t, "chat", invocation(1)) // server id 1
	s.send(t, "chat", invocation(2)) // 2
	c.readText(invocation(1) + rs)
	c.readText(invocation(2) + rs)
	// The client acks 1 and invokes (its message 1): the completion is
	// server id 3, then the server acks the invocation.
	c.sendText(`{"type":8,"sequenceId":1}` + rs + `{"type":1,"invocationId":"a","target":"echo","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"a"}` + rs)
	c.readText(`{"type":8,"sequenceId":1}` + rs)

	// The TCP connection drops without a close frame; messages keep coming.
	c.conn.Close()
	s.send(t, "chat", invocation(4))
	s.send(t, "chat", invocation(5))

	// Same URL, no negotiate, no handshake: Sequence with the first
	// unacknowledged id, the replay in order, then live messages.
	c2 := mustDialWS(t, u)
	c2.readText(`{"type":9,"sequenceId":2}` + rs)
	c2.readText(invocation(2) + rs)
	c2.readText(`{"type":3,"invocationId":"a"}` + rs)
	c2.readText(invocation(4) + rs)
	c2.readText(invocation(5) + rs)
	c2.sendText(`{"type":9,"sequenceId":2}` + rs) // the client has nothing to resend
	s.send(t, "chat", invocation(6))
	c2.readText(invocation(6) + rs)

	// Ack 5: only 6 (and what comes later) is replayed on the next reconnect.
	c2.sendText(`{"type":8,"sequenceId":5}` + rs + `{"type":1,"invocationId":"b","target":"echo","arguments":[]}` + rs)
	c2.readText(`{"type":3,"invocationId":"b"}` + rs) // server id 7
	c2.readText(`{"type":8,"sequenceId":2}` + rs)
	c2.conn.Close()

	c3 := mustDialWS(t, u)
	c3.readText(`{"type":9,"sequenceId":6}` + rs)
	c3.readText(invocation(6) + rs)
	c3.readText(`{"type":3,"invocationId":"b"}` + rs)
	// The client missed the server's Ack 2 and sends b again after its
	// Sequence: b was processed, c is new.
	c3.sendText(`{"type":9,"sequenceId":2}` + rs +
		`{"type":1,"invocationId":"b","target":"echo","arguments":[]}` + rs +
		`{"type":1,"invocationId":"c","target":"echo","arguments":[]}` + rs)
	c3.readText(`{"type":3,"invocationId":"c"}` + rs)
	c3.readText(`{"type":8,"sequenceId":3}` + rs)

	var targets []string
	for _, inv := range s.up.invocations() {
		targets = append(targets, inv.body)
	}
	if len(targets) != 3 || !strings.Contains(targets[0], `"a"`) || !strings.Contains(targets[1], `"b"`) || !strings.Contains(targets[2], `"c"`) {
		t.Fatalf("upstream invocations %q: want a, b and c once each", targets)
	}
	if d := s.up.disconnects(); len(d) != 0 {
		t.Fatalf("disconnected events during stateful reconnects: %+v", d)
	}
	if got := len(s.up.connects()); got != 1 {
		t.Fatalf("%d connected events, want 1 for one logical connection", got)
	}

	c3.sendClose(1000)
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err != "" || d.conn.ID != n.ConnectionID {
		t.Fatalf("disconnected %+v", d)
	}
}

// A partial record left by a dropped socket must not be glued to the first
// record of the next socket.
func TestStatefulReconnectDropsPartialRecord(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	c, u, _ := connectStateful(t, s, "")
	c.sendText(`{"type":1,"invocationId":"p","target":"echo",`)
	c.sendText(`{"type":6}`) // still without a separator
	c.conn.Close()

	c2 := mustDialWS(t, u)
	c2.readText(`{"type":9,"sequenceId":1}` + rs)
	c2.sendText(`{"type":9,"sequenceId":1}` + rs + `{"type":1,"invocationId":"q","target":"echo","arguments":[]}` + rs)
	c2.readText(`{"type":3,"invocationId":"q"}` + rs)
	c2.readText(`{"type":8,"sequenceId":1}` + rs)
}

func TestStatefulSequenceBeyondReceived(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	c, _, _ := connectStateful(t, s, "")
	c.sendText(`{"type":1,"invocationId":"1","target":"echo","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"1"}` + rs)
	c.readText(`{"type":8,"sequenceId":1}` + rs)
	c.sendText(`{"type":9,"sequenceId":3}` + rs) // received 1: the next is 2
	f := c.read()
	if !strings.HasPrefix(f.data, `{"type":7,"error":"Connection closed with an error.`) || strings.Contains(f.data, "allowReconnect") {
		t.Fatalf("answer %q, want a Close with an error and no reconnect", f.data)
	}
	c.expectClose()
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "bad_sequence"); got != 1 {
		t.Errorf("rejected{bad_sequence} = %v", got)
	}
}

func TestStatefulMessagePack(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "&useStatefulReconnect=true")
	u := s.clientURL("chat", n.ConnectionToken, tok)
	c := mustDialWS(t, u)
	c.sendText(`{"protocol":"messagepack","version":2}` + rs)
	c.readBinary([]byte("{}" + rs))
	msg := []byte{0x08, 0x95, 0x01, 0x80, 0xc0, 0xa1, 't', 0x91, 0x01}
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[1]}`)
	c.readBinary(msg)
	c.conn.Close()

	c2 := mustDialWS(t, u)
	c2.readBinary([]byte{0x03, 0x92, 0x09, 0x01}) // [9, 1]
	c2.readBinary(msg)
	c2.sendBinary([]byte{0x03, 0x92, 0x08, 0x01}) // Ack 1
	c2.sendBinary([]byte{0x03, 0x92, 0x09, 0x01}) // Sequence 1
	// [1, {}, "i", "echo", []]
	c2.sendBinary([]byte{0x0b, 0x95, 0x01, 0x80, 0xa1, 'i', 0xa4, 'e', 'c', 'h', 'o', 0x90})
	c2.readBinary([]byte{0x06, 0x94, 0x03, 0x80, 0xa1, 'i', 0x02})
	c2.readBinary([]byte{0x03, 0x92, 0x08, 0x01})
}

// Without version 2, or on another transport, a stateful negotiation gives
// a plain connection: no Acks, and a drop ends it.
func TestStatefulNeedsVersion2AndWebSockets(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	tok := s.token(t, "chat", "")

	n := s.negotiate(t, "chat", tok, "&useStatefulReconnect=true")
	u := s.clientURL("chat", n.ConnectionToken, tok)
	c := mustDialWS(t, u)
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText("{}" + rs)
	c.sendText(`{"type":1,"invocationId":"1","target":"echo","arguments":[]}` + rs + `{"type":1,"invocationId":"2","target":"echo","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"1"}` + rs)
	c.readText(`{"type":3,"invocationId":"2"}` + rs) // no Ack in between
	c.conn.Close()
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if _, err := dialWS(t, u, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("reconnect of a version 1 connection: %v, want 404", err)
	}

	// Long polling with version 2.
	n = s.negotiate(t, "chat", tok, "&useStatefulReconnect=true")
	pu := s.clientURL("chat", n.ConnectionToken, "")
	awaitPoll(t, poll(t, pu, tok))
	do(t, http.MethodPost, pu, tok, []byte(`{"protocol":"json","version":2}`+rs), nil)
	awaitPoll(t, poll(t, pu, tok))
	do(t, http.MethodPost, pu, tok, []byte(`{"type":1,"invocationId":"3","target":"echo","arguments":[]}`+rs), nil)
	if r := awaitPoll(t, poll(t, pu, tok)); r.body != `{"type":3,"invocationId":"3"}`+rs {
		t.Fatalf("long polling, version 2: %q, want the completion alone", r.body)
	}
}

// A client that does not come back within the recovery window is gone: the
// disconnected event fires once, with an error, and the id is dead.
func TestStatefulRecoveryWindowExpires(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true, recovery: 50 * time.Millisecond})
	c, u, n := connectStateful(t, s, "")
	c.conn.Close()
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err == "" || d.conn.ID != n.ConnectionID {
		t.Fatalf("disconnected %+v, want an error for %s", d, n.ConnectionID)
	}
	if _, err := dialWS(t, u, nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("reconnect after the window: %v, want 404", err)
	}
}

// A client may reconnect before the server noticed that its old socket is
// dead: the new socket takes over, the old one is closed.
func TestStatefulReconnectReplacesHalfOpenSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{stateful: true})
	old, u, _ := connectStateful(t, s, "")
	s.send(t, "chat", invocation(1))
	old.readText(invocation(1) + rs)

	c := mustDialWS(t, u)
	c.readText(`{"type":9,"sequenceId":1}` + rs)
	c.readText(invocation(1) + rs)
	if ce := old.expectClose(); ce.code != 1000 {
		t.Errorf("old socket: close %v, want 1000", ce)
	}
	c.sendText(`{"type":8,"sequenceId":1}` + rs + `{"type":9,"sequenceId":1}` + rs)
	s.send(t, "chat", invocation(2))
	c.readText(invocation(2) + rs)
	if d := s.up.disconnects(); len(d) != 0 {
		t.Fatalf("disconnected events: %+v", d)
	}
}
