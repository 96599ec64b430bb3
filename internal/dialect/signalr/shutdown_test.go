package signalr_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	j, _ := s.connectJSON(t, "chat", "", 1, "")
	m := mustDialWS(t, s.clientURL("chat", "", tok))
	m.sendText(`{"protocol":"messagepack","version":1}` + rs)
	m.readBinary([]byte("{}" + rs))
	n := s.negotiate(t, "chat", tok, "")
	st := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	st.expect(t, "{}"+rs)
	eventually.True(t, "three connections", 10*time.Second, func() bool { return len(s.up.connects()) == 3 })

	if err := s.node.Shutdown(context.Background(), "server shutting down"); err != nil {
		t.Fatal(err)
	}
	j.readText(`{"type":7,"error":"server shutting down","allowReconnect":true}` + rs)
	if ce := j.expectClose(); ce.code != 1001 {
		t.Errorf("JSON client: close %v, want 1001", ce)
	}
	f := m.read()
	msg, err := hubproto.MessagePack.Decode(frameBody(t, f))
	if !f.binary || err != nil || msg.Kind != hubproto.Close || msg.Error != "server shutting down" || !msg.AllowReconnect {
		t.Errorf("msgpack client: % x (%+v, %v), want Close with allowReconnect", f.data, msg, err)
	}
	if ce := m.expectClose(); ce.code != 1001 {
		t.Errorf("msgpack client: close %v, want 1001", ce)
	}
	st.expect(t, `{"type":7,"error":"server shutting down","allowReconnect":true}`+rs)
	if e, ok := st.next(t); ok {
		t.Errorf("SSE event %q after the Close; want the stream to end", e)
	}
	eventually.True(t, "disconnected events", 10*time.Second, func() bool { return len(s.up.disconnects()) == 3 })

	// A closed node takes no new connections: the handshake fails.
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText(`{"error":"Server is shutting down."}` + rs)
	c.expectClose()
}

func TestCloseConns(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, n := s.connectJSON(t, "chat", "", 1, "")
	other, _ := s.connectJSON(t, "chat", "", 1, "")
	err := s.hub(t, "chat").CloseConns(context.Background(), core.Target{Kind: core.ToConn, Name: n.ConnectionID}, "kicked by the app")
	if err != nil {
		t.Fatal(err)
	}
	c.readText(`{"type":7,"error":"kicked by the app"}` + rs)
	if ce := c.expectClose(); ce.code != 1000 {
		t.Errorf("close %v, want 1000", ce)
	}
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.conn.ID != n.ConnectionID {
		t.Fatalf("disconnected %+v", d)
	}
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[]}`)
	other.readText(`{"type":1,"target":"t","arguments":[]}` + rs)
}

// A long-polling client collects the server's Close with its next poll,
// then gets 204.
func TestServerCloseOnLongPolling(t *testing.T) {
	t.Parallel()
	for _, shutdown := range []bool{false, true} {
		s := startServer(t, serverOptions{})
		tok := s.token(t, "chat", "")
		n := s.negotiate(t, "chat", tok, "")
		u := s.clientURL("chat", n.ConnectionToken, "")
		awaitPoll(t, poll(t, u, tok))
		do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
		if r := awaitPoll(t, poll(t, u, tok)); r.body != "{}"+rs {
			t.Fatalf("handshake answer %q", r.body)
		}
		want := `{"type":7,"error":"bye"}` + rs
		if shutdown {
			want = `{"type":7,"error":"bye","allowReconnect":true}` + rs
			if err := s.node.Shutdown(context.Background(), "bye"); err != nil {
				t.Fatal(err)
			}
		} else if err := s.hub(t, "chat").CloseConns(context.Background(), core.Target{Kind: core.ToAll}, "bye"); err != nil {
			t.Fatal(err)
		}
		if r := awaitPoll(t, poll(t, u, tok)); r.status != 200 || r.body != want {
			t.Fatalf("shutdown %v: poll %d %q, want %q", shutdown, r.status, r.body, want)
		}
		if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusNoContent {
			t.Fatalf("shutdown %v: poll after the Close %d, want 204", shutdown, r.status)
		}
		eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
		eventually.True(t, "the session to be forgotten", 10*time.Second, func() bool { return metrictest.Present(t, s.reg, "switchboard_signalr_sessions") == 0 })
	}
}
