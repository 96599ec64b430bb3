package signalr_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
)

func newRateLimiter(t *testing.T, cfg ratelimit.Config) (*ratelimit.Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	l, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

var upgradeHeaders = map[string]string{
	"Connection": "Upgrade", "Upgrade": "websocket",
	"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}

func want429(t *testing.T, what string, resp *http.Response, body []byte, limit string) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), limit) {
		t.Fatalf("%s: %d Retry-After %q %q, want 429 with Retry-After naming %s", what, resp.StatusCode, resp.Header.Get("Retry-After"), body, limit)
	}
}

// limits.ip_max_connections counts every transport (WebSockets with or
// without negotiate, SSE streams, long-polling connections) and is checked
// before the token; negotiate and later polls of an open long-polling
// connection are not connections; each transport gives its place back when it
// ends.
func TestIPConnectionLimitAllTransports(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MaxConns: 1})
	s := startServer(t, serverOptions{rate: lim})
	tok := s.token(t, "chat", "u")
	ws, _ := s.connectJSON(t, "chat", "u", 1, "")

	resp, body := do(t, http.MethodGet, s.clientURL("chat", "", ""), "", nil, upgradeHeaders)
	want429(t, "skipNegotiation WebSocket without a token", resp, body, "limits.ip_max_connections")
	n := s.negotiate(t, "chat", tok, "") // not a connection: allowed
	resp, body = do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, tok), "", nil, upgradeHeaders)
	want429(t, "second WebSocket", resp, body, "limits.ip_max_connections")
	resp, body = do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), "", nil, map[string]string{"Accept": "text/event-stream"})
	want429(t, "SSE", resp, body, "limits.ip_max_connections")
	if r := awaitPoll(t, poll(t, s.clientURL("chat", n.ConnectionToken, ""), tok)); r.status != http.StatusTooManyRequests {
		t.Fatalf("first long poll: %d %q, want 429", r.status, r.body)
	}

	ws.sendClose(1000)
	eventually.True(t, "the WebSocket's place back", 10*time.Second, func() bool { _, c := lim.Tracked(); return c == 0 })

	sse := openSSE(t, s.clientURL("chat", s.negotiate(t, "chat", tok, "").ConnectionToken, ""), tok)
	if sse.status != http.StatusOK {
		t.Fatalf("SSE after the WebSocket ended: %d", sse.status)
	}
	if _, c := lim.Tracked(); c != 1 {
		t.Fatalf("%d connections counted with one SSE stream open", c)
	}
	sse.cancel()
	eventually.True(t, "the SSE stream's place back", 10*time.Second, func() bool { _, c := lim.Tracked(); return c == 0 })

	u := s.clientURL("chat", s.negotiate(t, "chat", tok, "").ConnectionToken, "")
	if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusOK {
		t.Fatalf("first poll: %d %q", r.status, r.body)
	}
	do(t, http.MethodPost, u, tok, []byte(`{"protocol":"json","version":1}`+rs), nil)
	if r := awaitPoll(t, poll(t, u, tok)); r.status != http.StatusOK { // a later poll: not a new connection
		t.Fatalf("second poll: %d %q", r.status, r.body)
	}
	if _, c := lim.Tracked(); c != 1 {
		t.Fatalf("%d connections counted for one long-polling connection", c)
	}
	if resp, body := do(t, http.MethodDelete, u, tok, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}
	eventually.True(t, "the long-polling connection's place back", 10*time.Second, func() bool { ips, c := lim.Tracked(); return c == 0 && ips == 0 })
}

// A burst of negotiates beyond limits.ip_handshake_burst is refused with 429
// before the token check, with CORS headers a browser can read.
func TestNegotiateHandshakeRate(t *testing.T) {
	lim, reg := newRateLimiter(t, ratelimit.Config{HandshakeRate: 0.001, HandshakeBurst: 2})
	s := startServer(t, serverOptions{rate: lim})
	u := s.url + "/client/negotiate?hub=chat&negotiateVersion=1"
	for i := range 2 {
		if resp, body := do(t, http.MethodPost, u, "bad", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("negotiate %d within the burst: %d %s, want 401", i+1, resp.StatusCode, body)
		}
	}
	resp, body := do(t, http.MethodPost, u, "bad", nil, map[string]string{"Origin": "https://app.example"})
	want429(t, "negotiate over the rate", resp, body, "limits.ip_handshake_rate")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatal("the 429 carries no CORS headers: a browser client cannot read it")
	}
	resp, body = do(t, http.MethodGet, s.clientURL("chat", "", ""), "", nil, upgradeHeaders)
	want429(t, "WebSocket over the rate", resp, body, "limits.ip_handshake_rate")
	if got := metrictest.Value(t, reg, "switchboard_ratelimit_refusals_total", "limit", ratelimit.LimitHandshakeRate); got != 2 {
		t.Fatalf("handshake_rate refusals = %v, want 2", got)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_client_requests_total", "kind", "negotiate", "status", "429"); got != 1 {
		t.Fatalf("negotiate 429s counted %v, want 1", got)
	}
}

// Over limits.conn_message_rate an invocation with an id gets an error
// Completion, one without is dropped (not forwarded upstream), and a client
// that keeps on gets a Close message with the error, then the socket closes.
func TestInvocationRateCompletionThenClose(t *testing.T) {
	lim, reg := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	s := startServer(t, serverOptions{rate: lim})
	c, _ := s.connectJSON(t, "chat", "u", 1, "")
	c.sendText(`{"type":1,"invocationId":"1","target":"t","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"1"}` + rs)
	c.sendText(`{"type":1,"target":"t","arguments":[]}` + rs)
	c.sendText(`{"type":1,"invocationId":"3","target":"t","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"3","error":"Invocation refused: message rate limit exceeded."}` + rs)
	c.sendText(`{"type":1,"target":"t","arguments":[]}` + rs) // dropped
	if n := len(s.up.invocations()); n != 2 {
		t.Fatalf("%d invocations forwarded upstream, want the burst of 2", n)
	}
	var batch strings.Builder
	for range ratelimit.MinRefusals - 1 { // refusals 3 to 11, in one frame: the 11th in a row closes
		batch.WriteString(`{"type":1,"target":"t","arguments":[]}` + rs)
	}
	c.sendText(batch.String())
	f := c.read()
	if f.data != `{"type":7,"error":"Connection closed with an error. message rate limit exceeded"}`+rs {
		t.Fatalf("got %q, want a Close message naming the rate limit", f.data)
	}
	c.expectEnd()
	if n := len(s.up.invocations()); n != 2 {
		t.Fatalf("%d invocations forwarded upstream, want 2", n)
	}
	if got := metrictest.Value(t, reg, "switchboard_ratelimit_closes_total"); got != 1 {
		t.Fatalf("closes = %v, want 1", got)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "message_rate"); got != ratelimit.MinRefusals+1 {
		t.Fatalf("message_rate rejections = %v, want %d (refusals and the close)", got, ratelimit.MinRefusals+1)
	}
}

// A negotiate and the transport it leads to are one connection attempt: the negotiate
// spends the handshake token, its session's first transport only counts as a connection.
// Before, each took a token: with limits.ip_handshake_burst 1 (the default for a rate of
// 1/s or less) no SignalR client that negotiates could ever connect (its transport got
// 429 right after the negotiate), and every client spent twice the rate.
func TestNegotiateAndTransportAreOneAttempt(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{HandshakeRate: 0.001, HandshakeBurst: 1, MaxConns: 1})
	s := startServer(t, serverOptions{rate: lim})
	tok := s.token(t, "chat", "u")
	n := s.negotiate(t, "chat", tok, "")
	if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err != nil {
		t.Fatalf("the WebSocket of a negotiated connection, within a burst of 1: %v, want it open", err)
	}
	if _, c := lim.Tracked(); c != 1 {
		t.Fatalf("%d connections counted with one WebSocket open, want 1", c)
	}
	// The token was spent: another negotiate is over the rate.
	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", tok, nil, nil)
	want429(t, "a second negotiate", resp, body, "limits.ip_handshake_rate")
}
