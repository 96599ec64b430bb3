package webpubsub

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/upstream"
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

// upgradeGet sends a WebSocket upgrade request that is not followed through
// and returns the answer (status, Retry-After, body).
func upgradeGet(t *testing.T, u string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, strings.Replace(u, "ws://", "http://", 1), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// The N+1th concurrent connection from one IP gets 429 with Retry-After,
// before its token is looked at; a closed connection gives its place back,
// and open/close cycles leave no count behind.
func TestIPConnectionLimit(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MaxConns: 2})
	s := startServer(t, serverOptions{rate: lim})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "u"})
	a := mustDial(t, s.wsURL("chat", tok), ProtocolJSON)
	a.readJSON()
	b := mustDial(t, s.wsURL("chat", tok), ProtocolJSON)
	b.readJSON()
	for _, u := range []string{s.wsURL("chat", tok), s.wsURL("chat", "not-a-token"), s.url + "/client/?hub=chat"} {
		status, retry, body := upgradeGet(t, u)
		if status != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "limits.ip_max_connections") {
			t.Fatalf("3rd connection (%s): %d Retry-After %q %q, want 429 with Retry-After naming the limit", u, status, retry, body)
		}
	}
	a.conn.Close()
	eventually.True(t, "the conn to be tracked", 5*time.Second, func() bool { _, n := lim.Tracked(); return n == 1 })
	c := mustDial(t, s.wsURL("chat", tok), ProtocolJSON)
	c.readJSON()
	for range 20 { // open/close cycles, some refused, some closed by the client, some refused before the upgrade
		d, err := dial(t, s.wsURL("chat", tok), ProtocolJSON)
		if err == nil {
			d.conn.Close()
		}
		upgradeGet(t, s.wsURL("chat", "bad"))
	}
	b.conn.Close()
	c.conn.Close()
	eventually.True(t, "the place back", 5*time.Second, func() bool { ips, n := lim.Tracked(); return n == 0 && ips == 0 })
	if got := metrictest.Value(t, s.reg, "switchboard_handshake_rejections_total", "reason", "rate_limited"); got < 3 {
		t.Fatalf("rate_limited rejections = %v, want at least 3", got)
	}
}

// A burst of handshakes beyond limits.ip_handshake_burst is refused with 429
// before the token check; the reliable protocol's recovery path is counted
// too.
func TestHandshakeBurst(t *testing.T) {
	lim, limReg := newRateLimiter(t, ratelimit.Config{HandshakeRate: 0.001, HandshakeBurst: 3})
	s := startServer(t, serverOptions{rate: lim})
	for i := range 3 {
		if status, _, body := upgradeGet(t, s.wsURL("chat", "bad")); status != http.StatusUnauthorized {
			t.Fatalf("attempt %d within the burst: %d %s, want 401", i+1, status, body)
		}
	}
	status, retry, body := upgradeGet(t, s.wsURL("chat", "bad"))
	if status != http.StatusTooManyRequests || retry == "" || !strings.Contains(body, "limits.ip_handshake_rate") {
		t.Fatalf("4th attempt: %d Retry-After %q %q, want 429", status, retry, body)
	}
	u := s.wsURL("chat", "") + "&awps_connection_id=x&awps_reconnection_token=y"
	if status, _, _ := upgradeGet(t, u); status != http.StatusTooManyRequests {
		t.Fatalf("recovery attempt over the rate: %d, want 429", status)
	}
	if got := metrictest.Value(t, limReg, "switchboard_ratelimit_refusals_total", "limit", ratelimit.LimitHandshakeRate); got != 2 {
		t.Fatalf("handshake_rate refusals = %v, want 2", got)
	}
}

// Over limits.conn_message_rate a request with an ackId gets an error ack
// (TooManyRequests), one without is dropped, and a client that keeps on is
// closed with 1008; its reliable session cannot be recovered.
func TestMessageRateErrorAckThen1008(t *testing.T) {
	lim, limReg := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	s := startServer(t, serverOptions{rate: lim, recovery: time.Minute})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "u", Roles: []string{"webpubsub.joinLeaveGroup"}})
	c := mustDial(t, s.wsURL("chat", tok), ProtocolJSONReliable)
	hello := c.readJSON()
	c.send(`{"type":"joinGroup","group":"g","ackId":1}`)
	c.send(`{"type":"joinGroup","group":"g","ackId":2}`)
	for i := 1; i <= 2; i++ {
		if got := c.read(); got != fmt.Sprintf(`{"type":"ack","ackId":%d,"success":true}`, i) {
			t.Fatalf("ack %d within the burst: %s", i, got)
		}
	}
	c.send(`{"type":"ping"}`) // no ackId: dropped (no pong)
	c.send(`{"type":"joinGroup","group":"g","ackId":3}`)
	ack := c.readJSON()
	errObj, _ := ack["error"].(map[string]any)
	if ack["type"] != "ack" || ack["ackId"] != 3.0 || ack["success"] != false || errObj["name"] != "TooManyRequests" || errObj["message"] == "" {
		t.Fatalf("over the rate: %v, want an ack with success false and error TooManyRequests", ack)
	}
	// Refusals 3 to 11: the 11th in a row closes. More are sent because a
	// loaded machine may read two of them more than ratelimit.Persist apart,
	// which starts a new run; the exact policy is the ratelimit package's
	// (synctest) tests. Writes after the close may fail: that ends the loop.
	for range 3 * ratelimit.MinRefusals {
		if wsutil.WriteClientText(c.conn, []byte(`{"type":"joinGroup","group":"g"}`)) != nil {
			break
		}
	}
	ce := c.expectClose()
	if ce.code != 1008 || ce.reason != "message rate limit exceeded" {
		t.Fatalf("closed %d %q, want 1008 \"message rate limit exceeded\"", ce.code, ce.reason)
	}
	if got := metrictest.Value(t, limReg, "switchboard_ratelimit_refusals_total", "limit", ratelimit.LimitMessageRate); got < ratelimit.MinRefusals+1 {
		t.Fatalf("message_rate refusals = %v, want at least %d", got, ratelimit.MinRefusals+1)
	}
	if got := metrictest.Value(t, limReg, "switchboard_ratelimit_closes_total"); got != 1 {
		t.Fatalf("closes = %v, want 1", got)
	}
	id, _ := hello["connectionId"].(string)
	rt, _ := hello["reconnectionToken"].(string)
	r, err := dial(t, s.wsURL("chat", tok)+"&awps_connection_id="+url.QueryEscape(id)+"&awps_reconnection_token="+url.QueryEscape(rt), ProtocolJSONReliable)
	if err != nil {
		t.Fatal(err)
	}
	if ce := r.expectClose(); ce.code != 1008 {
		t.Fatalf("recovery after the rate close: closed %d, want 1008 (not recoverable)", ce.code)
	}
}

// userEvents is an upstream with a handler for every user event that
// counts the events it gets.
type userEvents struct{ n atomic.Int64 }

func (u *userEvents) Connect(context.Context, upstream.ConnectRequest) (*upstream.ConnectResponse, error) {
	return nil, upstream.ErrNoHandler
}

func (u *userEvents) UserEvent(context.Context, upstream.Conn, string, string, []byte) (*upstream.EventResponse, error) {
	u.n.Add(1)
	return &upstream.EventResponse{Status: http.StatusNoContent}, nil
}
func (u *userEvents) Connected(upstream.Conn)            {}
func (u *userEvents) HasUserHandler(string, string) bool { return true }

// A raw client's frames over the rate are dropped (not sent to the event
// handler) and counted; one that keeps on is closed with 1008.
func TestRawMessageRateDropsThen1008(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	up := &userEvents{}
	s := startServer(t, serverOptions{rate: lim, up: up})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "u"})
	c := mustDial(t, s.wsURL("chat", tok), "")
	for range 2 + ratelimit.MinRefusals + 1 {
		c.send("hello")
	}
	ce := c.expectClose()
	if ce.code != 1008 || ce.reason != "message rate limit exceeded" {
		t.Fatalf("closed %d %q, want 1008", ce.code, ce.reason)
	}
	if n := up.n.Load(); n != 2 {
		t.Fatalf("%d user events, want the burst of 2 (the rest dropped)", n)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_client_request_errors_total", "dialect", "raw", "reason", "message_rate"); got != ratelimit.MinRefusals {
		t.Fatalf("dropped raw messages counted %v, want %d", got, ratelimit.MinRefusals)
	}
}

// A reliable client's sequenceAcks are the protocol's own bookkeeping (as SignalR's Ack
// and Sequence, which its budget leaves out): they do not spend limits.conn_message_rate.
// Before, they did: a client that acknowledged what it received used up its budget, had
// its own requests refused, and was closed with 1008 for acknowledging.
func TestSequenceAcksSpendNoMessageBudget(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	s := startServer(t, serverOptions{rate: lim, recovery: time.Minute})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "u", Roles: []string{"webpubsub.joinLeaveGroup"}})
	c := mustDial(t, s.wsURL("chat", tok), ProtocolJSONReliable)
	c.readJSON() // connected
	for range 2 * ratelimit.MinRefusals {
		c.send(`{"type":"sequenceAck","sequenceId":0}`)
	}
	c.send(`{"type":"joinGroup","group":"g","ackId":1}`)
	if got := c.read(); got != `{"type":"ack","ackId":1,"success":true}` {
		t.Fatalf("a request within the budget after sequenceAcks: %s, want a successful ack", got)
	}
}
