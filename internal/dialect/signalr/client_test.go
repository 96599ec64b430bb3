package signalr_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestClientRequestErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	alice := s.token(t, "chat", "alice")
	bob := s.token(t, "chat", "bob")
	n := s.negotiate(t, "chat", alice, "")

	for _, tc := range []struct {
		name   string
		method string
		url    string
		token  string
		hdr    map[string]string
		status int
		body   string
	}{
		{"poll without id", http.MethodGet, s.clientURL("chat", "", ""), alice, nil, 400, "Connection ID required"},
		{"SSE without id", http.MethodGet, s.clientURL("chat", "", ""), alice, map[string]string{"Accept": "text/event-stream"}, 400, "Connection ID required"},
		{"POST without id", http.MethodPost, s.clientURL("chat", "", ""), alice, nil, 400, "Connection ID required"},
		{"DELETE without id", http.MethodDelete, s.clientURL("chat", "", ""), alice, nil, 400, "Connection ID required"},
		{"unknown id", http.MethodGet, s.clientURL("chat", "nope", ""), alice, nil, 404, "No Connection with that ID"},
		{"the connection id is not the token", http.MethodGet, s.clientURL("chat", n.ConnectionID, ""), alice, nil, 404, "No Connection with that ID"},
		{"another hub", http.MethodGet, s.clientURL("other", n.ConnectionToken, ""), s.token(t, "other", "alice"), nil, 404, "No Connection with that ID"},
		{"no token", http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), "", nil, 401, ""},
		{"token of another user", http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), bob, nil, 401, ""},
		{"token of another hub", http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), s.token(t, "other", "alice"), nil, 401, ""},
		{"anonymous token for a user's connection", http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), s.token(t, "chat", ""), nil, 401, ""},
		{"PUT", http.MethodPut, s.clientURL("chat", n.ConnectionToken, ""), alice, nil, 405, ""},
		{"DELETE before any transport", http.MethodDelete, s.clientURL("chat", n.ConnectionToken, ""), alice, nil, 400, "Cannot terminate this connection using the DELETE endpoint."},
		{"POST before any transport", http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), alice, nil, 404, ""},
	} {
		resp, body := do(t, tc.method, tc.url, tc.token, nil, tc.hdr)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %q, want %d", tc.name, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.body != "" && strings.TrimSpace(string(body)) != tc.body {
			t.Errorf("%s: body %q, want %q", tc.name, body, tc.body)
		}
		if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
	}

	// None of the refusals above used up the session: it still connects.
	c := mustDialWS(t, s.clientURL("chat", n.ConnectionToken, alice))
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText("{}" + rs)

	// A WebSocket with an unknown id is refused before the upgrade.
	if _, err := dialWS(t, s.clientURL("chat", "unknown", alice), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("WebSocket with an unknown id: %v, want 404", err)
	}
	// The token also goes in the Authorization header of a WebSocket (Node, .NET).
	n2 := s.negotiate(t, "chat", alice, "")
	c2, err := dialWS(t, s.clientURL("chat", n2.ConnectionToken, ""), http.Header{"Authorization": {"Bearer " + alice}})
	if err != nil {
		t.Fatalf("WebSocket with an Authorization header: %v", err)
	}
	c2.sendText(`{"protocol":"json","version":1}` + rs)
	c2.readText("{}" + rs)
}

func TestWrongMethodForTransport(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, n := s.connectJSON(t, "chat", "alice", 1, "")
	tok := s.token(t, "chat", "alice")

	resp, body := do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"type":6}`+rs), nil)
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to a WebSocket connection: %d %s, want 405", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodDelete, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
	if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(body)) != "Cannot terminate this connection using the DELETE endpoint." {
		t.Errorf("DELETE of a WebSocket connection: %d %s, want 400", resp.StatusCode, body)
	}
	// A change of transport is refused and leaves the socket alone.
	resp, body = do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
	if resp.StatusCode != http.StatusBadRequest || strings.TrimSpace(string(body)) != "Cannot change transports mid-connection" {
		t.Errorf("long poll on a WebSocket connection: %d %s, want 400", resp.StatusCode, body)
	}
	// A second WebSocket for a non-stateful connection is a conflict.
	if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second WebSocket: %v, want 409", err)
	}
	s.send(t, "chat", `{"type":1,"target":"still","arguments":[]}`)
	c.readText(`{"type":1,"target":"still","arguments":[]}` + rs)
}

func TestChangeOfTransport(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")

	// Long polling first, then SSE or WebSockets.
	n := s.negotiate(t, "chat", tok, "")
	if r := awaitPoll(t, poll(t, s.clientURL("chat", n.ConnectionToken, ""), tok)); r.status != 200 {
		t.Fatalf("first poll %d", r.status)
	}
	sse := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	if sse.status != http.StatusBadRequest {
		t.Errorf("SSE after long polling: %d, want 400", sse.status)
	}
	if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("WebSocket after long polling: %v, want 400", err)
	}

	// SSE first: a second stream is a conflict, long polling a change.
	n = s.negotiate(t, "chat", tok, "")
	first := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	if first.status != 200 {
		t.Fatalf("SSE %d", first.status)
	}
	second := openSSE(t, s.clientURL("chat", n.ConnectionToken, ""), tok)
	if second.status != http.StatusConflict {
		t.Errorf("second SSE stream: %d, want 409", second.status)
	}
	resp, body := do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("long poll on an SSE connection: %d %s, want 400", resp.StatusCode, body)
	}
	// The first stream still works.
	resp, body = do(t, http.MethodPost, s.clientURL("chat", n.ConnectionToken, ""), tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("handshake POST: %d %s", resp.StatusCode, body)
	}
	first.expect(t, "{}"+rs)
}

func TestNegotiatedSessionExpires(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{negotiateTimeout: 50 * time.Millisecond})
	tok := s.token(t, "chat", "")
	// A connected session (skipNegotiation: no race with the short timeout).
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText("{}" + rs)

	n := s.negotiate(t, "chat", tok, "")
	eventually.True(t, "the unused session to be discarded", 10*time.Second, func() bool {
		return metrictest.Present(t, s.reg, "switchboard_signalr_sessions") == 1 // the connected one stays
	})
	if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("WebSocket after the negotiate timeout: %v, want 404", err)
	}
	resp, _ := do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("poll after the negotiate timeout: %d, want 404", resp.StatusCode)
	}
	// The connected session is still served.
	s.send(t, "chat", `{"type":1,"target":"t","arguments":[]}`)
	c.readText(`{"type":1,"target":"t","arguments":[]}` + rs)
}

// A WebSocket request whose upgrade fails leaves no session behind (it
// claimed the WebSocket transport, so the negotiate sweeper skips it).
func TestFailedUpgradeDoesNotLeakSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	n := s.negotiate(t, "chat", tok, "")
	hdr := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade"} // no key, no version
	for _, id := range []string{n.ConnectionToken, ""} {                      // negotiated, and skipNegotiation
		resp, body := do(t, http.MethodGet, s.clientURL("chat", id, ""), tok, nil, hdr)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("broken upgrade (id %q): %d %s, want a 4xx", id, resp.StatusCode, body)
		}
	}
	eventually.True(t, "no sessions left", 10*time.Second, func() bool { return metrictest.Present(t, s.reg, "switchboard_signalr_sessions") == 0 })
}
