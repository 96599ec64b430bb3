package signalr_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

func TestServerSentEvents(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "erin")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "")
	// EventSource cannot send headers: the token comes in the query.
	st := openSSE(t, s.clientURL("chat", n.ConnectionToken, tok), "")
	if st.status != 200 {
		t.Fatalf("SSE status %d", st.status)
	}
	if ct := st.header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := st.header.Get("Cache-Control"); !strings.Contains(cc, "no-cache") {
		t.Errorf("Cache-Control %q", cc)
	}

	post := func(body string) {
		t.Helper()
		resp, b := do(t, http.MethodPost, u, tok, []byte(body), map[string]string{"Content-Type": "text/plain;charset=UTF-8"})
		if resp.StatusCode != 200 {
			t.Fatalf("POST %q: %d %s", body, resp.StatusCode, b)
		}
	}
	post(`{"protocol":"json","version":1}` + rs)
	st.expect(t, "{}"+rs)
	eventually.True(t, "connected event", 10*time.Second, func() bool { return len(s.up.connects()) == 1 })

	// Two invocations batched in one POST.
	post(`{"type":1,"invocationId":"1","target":"a","arguments":[]}` + rs + `{"type":1,"invocationId":"2","target":"b","arguments":[]}` + rs)
	got := ""
	for len(got) < 2*len(`{"type":3,"invocationId":"1"}`+rs) {
		e, ok := st.next(t)
		if !ok {
			t.Fatal("stream ended")
		}
		got += e
	}
	if want := `{"type":3,"invocationId":"1"}` + rs + `{"type":3,"invocationId":"2"}` + rs; got != want {
		t.Fatalf("completions %q, want %q", got, want)
	}
	s.send(t, "chat", `{"type":1,"target":"news","arguments":["x"]}`)
	st.expect(t, `{"type":1,"target":"news","arguments":["x"]}`+rs)

	// The JS client's stop: a Close message, then the stream ends.
	post(`{"type":7}` + rs)
	if e, ok := st.next(t); ok {
		t.Fatalf("event %q after the client's Close; want the stream to end", e)
	}
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err != "" || d.conn.ID != n.ConnectionID {
		t.Fatalf("disconnected %+v, want a clean end of %s", d, n.ConnectionID)
	}
}

func TestServerSentEventsClientGoesAway(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	st := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	st.expect(t, "{}"+rs)
	// The JS client closes the EventSource without waiting for its Close
	// message to be posted: a client that leaves is a normal end, every time.
	st.cancel()
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err != "" || d.conn.ID != n.ConnectionID {
		t.Fatalf("disconnected %+v: want a clean end of %s", d, n.ConnectionID)
	}
	if _, err := s.hub(t, "chat").Conn(n.ConnectionID); err == nil {
		t.Fatal("conn still in the hub")
	}
}

func TestServerSentEventsRefuseMessagePack(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	st := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"protocol":"messagepack","version":1}`+rs), nil)
	st.expect(t, `{"error":"Cannot use the 'messagepack' protocol on the current transport. The transport does not support 'Binary' transfer format."}`+rs)
	if e, ok := st.next(t); ok {
		t.Fatalf("event %q after a failed handshake; want the stream to end", e)
	}
	if len(s.up.connects()) != 0 {
		t.Fatal("connected event for a failed handshake")
	}
}

func TestServerSentEventsKeepAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{keepAlive: 20 * time.Millisecond})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	st := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	st.expect(t, "{}"+rs)
	st.expect(t, `{"type":6}`+rs)
}
