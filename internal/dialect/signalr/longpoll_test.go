package signalr_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestLongPolling(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "frank")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "") + "&_=1700000000000"

	// The first poll returns at once, empty.
	r := awaitPoll(t, poll(t, u, tok))
	if r.status != 200 || r.body != "" || r.header.Get("Content-Type") != "application/octet-stream" || r.header.Get("Content-Length") != "0" {
		t.Fatalf("first poll: %d %q %v", r.status, r.body, r.header)
	}
	if !strings.Contains(r.header.Get("Cache-Control"), "no-cache") {
		t.Errorf("poll Cache-Control %q", r.header.Get("Cache-Control"))
	}

	resp, body := do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d %s", resp.StatusCode, body)
	}
	if r := awaitPoll(t, poll(t, u, tok)); r.status != 200 || r.body != "{}"+rs {
		t.Fatalf("poll after the handshake: %d %q, want {}␞", r.status, r.body)
	}
	eventually.True(t, "connected event", 10*time.Second, func() bool { return len(s.up.connects()) == 1 })

	// A held poll gets what is sent meanwhile.
	held := poll(t, u, tok)
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[1]}`)
	if r := awaitPoll(t, held); r.status != 200 || r.body != `{"type":1,"target":"t","arguments":[1]}`+rs {
		t.Fatalf("held poll: %d %q", r.status, r.body)
	}
	// Invocations go by POST; their completions come with the next poll.
	do(t, http.MethodPost, u, tok, []byte(`{"type":1,"invocationId":"9","target":"x","arguments":[]}`+rs), nil)
	if r := awaitPoll(t, poll(t, u, tok)); r.status != 200 || r.body != `{"type":3,"invocationId":"9"}`+rs {
		t.Fatalf("poll after an invocation: %d %q", r.status, r.body)
	}

	// DELETE stops: 202, and the held poll gets 204.
	held = poll(t, u, tok)
	eventually.True(t, "the poll to be held", 10*time.Second, func() bool {
		return metrictest.Value(t, s.reg, "switchboard_signalr_client_requests_total", "kind", "poll") >= 5
	})
	resp, body = do(t, http.MethodDelete, u, tok, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s, want 202", resp.StatusCode, body)
	}
	if r := awaitPoll(t, held); r.status != http.StatusNoContent {
		t.Fatalf("held poll after DELETE: %d %q, want 204", r.status, r.body)
	}
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err != "" || d.conn.ID != n.ConnectionID || d.conn.UserID != "frank" {
		t.Fatalf("disconnected %+v, want a clean end of %s", d, n.ConnectionID)
	}
	// The session is gone; a late DELETE is a 404 (the JS client ignores it).
	if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusNotFound {
		t.Fatalf("poll after DELETE: %d, want 404", r.status)
	}
	if resp, _ := do(t, http.MethodDelete, u, tok, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %d, want 404", resp.StatusCode)
	}
}

func TestLongPollingMessagePack(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "")
	awaitPoll(t, poll(t, u, tok))
	do(t, http.MethodPost, u, tok, []byte(`{"protocol":"messagepack","version":1}`+rs), nil)
	if r := awaitPoll(t, poll(t, u, tok)); r.status != 200 || r.body != "{}"+rs {
		t.Fatalf("handshake answer %d %q", r.status, r.body)
	}
	// [1, {}, "xyz", "method", [42], []], sent as application/octet-stream
	inv := []byte{0x11, 0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90}
	do(t, http.MethodPost, u, tok, inv, map[string]string{"Content-Type": "application/octet-stream"})
	want := []byte{0x08, 0x94, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x02}
	if r := awaitPoll(t, poll(t, u, tok)); r.status != 200 || !bytes.Equal([]byte(r.body), want) {
		t.Fatalf("completion % x, want % x", r.body, want)
	}
	if got := s.up.invocations(); len(got) != 1 || !got[0].msgpack || got[0].body != string(inv[1:]) {
		t.Fatalf("upstream %+v", got)
	}
}

func TestLongPollingClientVanishes(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{longPollGap: 300 * time.Millisecond})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "")
	awaitPoll(t, poll(t, u, tok))
	if resp, body := do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil); resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d %s", resp.StatusCode, body)
	}
	// No more polls: the gap ends the connection with an error.
	eventually.True(t, "disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == 1 })
	if d := s.up.disconnects()[0]; d.err == "" {
		t.Fatalf("disconnected %+v: want an error", d)
	}
	if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusNotFound {
		t.Fatalf("poll after the gap: %d, want 404", r.status)
	}
}

func TestPostTooLarge(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{maxMessage: 1024})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "")
	awaitPoll(t, poll(t, u, tok))
	do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	if r := awaitPoll(t, poll(t, u, tok)); r.body != "{}"+rs {
		t.Fatalf("handshake answer %q", r.body)
	}
	big := `{"type":1,"target":"t","arguments":["` + strings.Repeat("x", 2000) + `"]}` + rs
	resp, body := do(t, http.MethodPost, u, tok, []byte(big), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized POST: %d %s, want 413", resp.StatusCode, body)
	}
	if len(s.up.invocations()) != 0 {
		t.Fatal("an oversized message reached the upstream")
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "too_large"); got != 1 {
		t.Errorf("rejected{too_large} = %v", got)
	}
	// Small messages still pass.
	do(t, http.MethodPost, u, tok, []byte(`{"type":1,"invocationId":"s","target":"t","arguments":[]}`+rs), nil)
	if r := awaitPoll(t, poll(t, u, tok)); r.body != `{"type":3,"invocationId":"s"}`+rs {
		t.Fatalf("poll %d %q", r.status, r.body)
	}
}

// A record without its separator that grows past the limit over several
// POSTs closes the connection instead of buffering without bound.
func TestPartialRecordLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{maxMessage: 1024})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	u := s.clientURL("chat", n.ConnectionToken, "")
	awaitPoll(t, poll(t, u, tok))
	do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	awaitPoll(t, poll(t, u, tok))
	chunk := []byte(strings.Repeat("x", 600))
	for i := 0; i < 2; i++ {
		if resp, _ := do(t, http.MethodPost, u, tok, chunk, nil); resp.StatusCode != 200 {
			t.Fatalf("POST %d: %d", i, resp.StatusCode)
		}
	}
	r := awaitPoll(t, poll(t, u, tok))
	if r.status != 200 || !strings.HasPrefix(r.body, `{"type":7,"error":"Connection closed with an error.`) {
		t.Fatalf("poll %d %q, want a Close with an error", r.status, r.body)
	}
	if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusNoContent {
		t.Fatalf("poll after the Close: %d, want 204", r.status)
	}
}
