package webpubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// testServer is a node with the client endpoint on a loopback listener.
type testServer struct {
	url  string
	node *core.Node
	keys *auth.KeyRing
	reg  *prometheus.Registry
	ep   *Endpoint
}

type serverOptions struct {
	limits   core.Limits
	recovery time.Duration
	maxMsg   int
	rate     *ratelimit.Limiter // nil: no rate limits
	up       Upstream
	invoke   InvokeConfig
	streams  StreamConfig
}

func startServer(t *testing.T, o serverOptions) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	var ep *Endpoint // made below, before any conn exists
	node, err := core.NewNode(core.Config{Limits: o.limits, RecoveryWindow: o.recovery, Registerer: reg,
		OnConnEnd: func(c *core.Conn, _ string) { ep.ConnEnded(c) }})
	if err != nil {
		t.Fatal(err)
	}
	wsrv, err := websocket.NewServer(websocket.Options{Registerer: reg, MaxMessageBytes: o.maxMsg})
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := auth.NewKeyRing("primary-key", "secondary-key")
	ep, err = NewEndpoint(EndpointConfig{Node: node, Keys: keys, WebSocket: wsrv, Registerer: reg, RateLimits: o.rate, Upstream: o.up, Invoke: o.invoke, Streams: o.streams})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ep)
	t.Cleanup(func() {
		node.Shutdown(context.Background(), "test over")
		ep.Close()
		hs.Close()
		wsrv.Close()
	})
	return &testServer{url: hs.URL, node: node, keys: keys, reg: reg, ep: ep}
}

func (s *testServer) token(t *testing.T, hub string, o auth.MintOptions) string {
	t.Helper()
	tok, err := s.keys.MintClientToken(auth.ClientAudience(s.url, hub), o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (s *testServer) wsURL(hub, token string) string {
	return strings.Replace(s.url, "http", "ws", 1) + "/client/hubs/" + hub + "?access_token=" + url.QueryEscape(token)
}

// client is a test WebSocket client.
type client struct {
	t    *testing.T
	ws   *wstest.Client
	conn net.Conn
}

func dial(t *testing.T, u, protocol string) (*client, error) {
	t.Helper()
	var protocols []string
	if protocol != "" {
		protocols = []string{protocol}
	}
	c, err := wstest.DialErr(t, u, protocols...)
	if err != nil {
		return nil, err
	}
	if c.Protocol != protocol {
		c.Close()
		return nil, fmt.Errorf("subprotocol echoed %q, want %q", c.Protocol, protocol)
	}
	return &client{t: t, ws: c, conn: c.Conn}, nil
}

func mustDial(t *testing.T, u, protocol string) *client {
	t.Helper()
	c, err := dial(t, u, protocol)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) send(v string) { c.t.Helper(); c.ws.WriteText([]byte(v)) }

// next reads the next data frame; a close frame is returned as an error.
func (c *client) next() ([]byte, ws.OpCode, error) {
	p, op, err := c.ws.ReadErr()
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return nil, ws.OpClose, &closeErr{int(ce.Code), ce.Reason}
	}
	return p, op, err
}

type closeErr struct {
	code   int
	reason string
}

func (e *closeErr) Error() string { return fmt.Sprintf("closed %d %s", e.code, e.reason) }

func (c *client) read() string {
	c.t.Helper()
	p, _, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return string(p)
}

func (c *client) readJSON() map[string]any {
	c.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(c.read()), &m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

// expectClose reads until a close frame and returns its code.
func (c *client) expectClose() *closeErr {
	c.t.Helper()
	for {
		_, _, err := c.next()
		if err == nil {
			continue
		}
		ce, ok := err.(*closeErr)
		if !ok {
			c.t.Fatalf("want a close frame, got %v", err)
		}
		return ce
	}
}

func TestJSONProtocolFlow(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "alice", Roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"}})
	a := mustDial(t, s.wsURL("chat", tok), ProtocolJSON)
	hello := a.readJSON()
	if hello["type"] != "system" || hello["event"] != "connected" || hello["userId"] != "alice" || hello["connectionId"] == "" {
		t.Fatalf("first frame = %v", hello)
	}
	if _, ok := hello["reconnectionToken"]; ok {
		t.Fatalf("non-reliable connected carries a reconnection token: %v", hello)
	}
	a.send(`{"type":"ping"}`)
	if got := a.read(); got != `{"type":"pong"}` {
		t.Fatalf("ping answered %s", got)
	}
	a.send(`{"type":"joinGroup","group":"g1","ackId":1}`)
	if got := a.read(); got != `{"type":"ack","ackId":1,"success":true}` {
		t.Fatalf("join ack = %s", got)
	}
	a.send(`{"type":"sendToGroup","group":"g1","ackId":2,"dataType":"text","data":"hi"}`)
	if got := a.read(); got != `{"type":"message","from":"group","group":"g1","fromUserId":"alice","dataType":"text","data":"hi"}` {
		t.Fatalf("echo = %s", got)
	}
	if got := a.read(); got != `{"type":"ack","ackId":2,"success":true}` {
		t.Fatalf("send ack = %s", got)
	}
	a.send(`{"type":"sendToGroup","group":"g1","ackId":3,"noEcho":true,"dataType":"binary","data":"AAEC"}`)
	if got := a.read(); got != `{"type":"ack","ackId":3,"success":true}` {
		t.Fatalf("noEcho: want only the ack, got %s", got)
	}
	a.send(`{"type":"joinGroup","group":"g2","ackId":3}`)
	ack := a.readJSON()
	if ack["success"] != false || ack["error"].(map[string]any)["name"] != "Duplicate" {
		t.Fatalf("repeated ackId: %v", ack)
	}
	a.send(`{"type":"event","event":"chat","ackId":4,"dataType":"json","data":{"x":1}}`)
	ack = a.readJSON()
	if ack["success"] != false || ack["error"].(map[string]any)["name"] != "InternalServerError" {
		t.Fatalf("event without handler: %v", ack)
	}
}

func TestServerMessagesByteExact(t *testing.T) {
	s := startServer(t, serverOptions{})
	hub, _ := s.node.Hub("exact")
	raw := mustDial(t, s.wsURL("exact", s.token(t, "exact", auth.MintOptions{})), "")
	js := mustDial(t, s.wsURL("exact", s.token(t, "exact", auth.MintOptions{})), ProtocolJSON)
	js.read() // connected
	eventually.True(t, "2 conns in the hub", 5*time.Second, func() bool { return hub.ConnCount() == 2 })
	send := func(typ core.DataType, data string) {
		if err := hub.Send(context.Background(), core.Target{Kind: core.ToAll}, &core.Message{Type: typ, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	send(core.JSON, `{"message":"Hello world!"}`)
	send(core.Text, "Hi there!")
	send(core.Binary, "\x00\x01\xff")
	for _, want := range []string{
		`{"type":"message","from":"server","dataType":"json","data":{"message":"Hello world!"}}`,
		`{"type":"message","from":"server","dataType":"text","data":"Hi there!"}`,
		`{"type":"message","from":"server","dataType":"binary","data":"AAH/"}`,
	} {
		if got := js.read(); got != want {
			t.Errorf("json client got %s, want %s", got, want)
		}
	}
	for _, want := range []struct {
		data string
		op   ws.OpCode
	}{{`{"message":"Hello world!"}`, ws.OpText}, {"Hi there!", ws.OpText}, {"\x00\x01\xff", ws.OpBinary}} {
		p, op, err := raw.next()
		if err != nil || string(p) != want.data || op != want.op {
			t.Errorf("raw client got %q op %v err %v, want %q op %v", p, op, err, want.data, want.op)
		}
	}
}

func TestPermissions(t *testing.T) {
	s := startServer(t, serverOptions{})
	none := mustDial(t, s.wsURL("perm", s.token(t, "perm", auth.MintOptions{})), ProtocolJSON)
	none.read()
	none.send(`{"type":"joinGroup","group":"g","ackId":1}`)
	if ack := none.readJSON(); ack["error"].(map[string]any)["name"] != "Forbidden" {
		t.Fatalf("join without role: %v", ack)
	}
	none.send(`{"type":"sendToGroup","group":"g","ackId":2,"dataType":"text","data":"x"}`)
	if ack := none.readJSON(); ack["error"].(map[string]any)["name"] != "Forbidden" {
		t.Fatalf("send without role: %v", ack)
	}
	one := mustDial(t, s.wsURL("perm", s.token(t, "perm", auth.MintOptions{Roles: []string{"webpubsub.joinLeaveGroup.room1"}})), ProtocolJSON)
	one.read()
	one.send(`{"type":"joinGroup","group":"room1","ackId":1}`)
	if ack := one.readJSON(); ack["success"] != true {
		t.Fatalf("join of permitted group: %v", ack)
	}
	one.send(`{"type":"joinGroup","group":"room2","ackId":2}`)
	if ack := one.readJSON(); ack["success"] != false {
		t.Fatalf("join of other group: %v", ack)
	}
	bad := one
	bad.send(`{"type":"joinGroup","group":"   ","ackId":3}`)
	if ack := bad.readJSON(); ack["error"].(map[string]any)["name"] != "BadRequest" {
		t.Fatalf("whitespace group: %v", ack)
	}
}

func TestHandshakeRejections(t *testing.T) {
	s := startServer(t, serverOptions{})
	other, _ := auth.NewKeyRing("wrong-key")
	wrongKey, _ := other.MintClientToken(auth.ClientAudience(s.url, "h"), auth.MintOptions{})
	expired := s.token(t, "h", auth.MintOptions{TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	cases := []struct {
		name, url string
		status    int
	}{
		{"no token", strings.Replace(s.url, "http", "ws", 1) + "/client/hubs/h", 401},
		{"wrong key", s.wsURL("h", wrongKey), 401},
		{"expired", s.wsURL("h", expired), 401},
		{"other hub", s.wsURL("h", s.token(t, "other", auth.MintOptions{})), 401},
		{"alg none", s.wsURL("h", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhdWQiOiJodHRwOi8veC9jbGllbnQvaHVicy9oIn0."), 401},
		{"bad hub", s.wsURL("9bad", s.token(t, "9bad", auth.MintOptions{})), 400},
		{"bad initial group", s.wsURL("h", s.token(t, "h", auth.MintOptions{Groups: []string{" "}})), 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dial(t, c.url, ProtocolJSON)
			var se ws.StatusError
			if !errorsAs(err, &se) || int(se) != c.status {
				t.Fatalf("dial error %v, want HTTP %d", err, c.status)
			}
		})
	}
	if got := testutil.ToFloat64(s.ep.metrics.rejected.WithLabelValues("token_signature")); got < 1 {
		t.Errorf("rejections by signature = %v", got)
	}
}

func TestBadInputCloses(t *testing.T) {
	s := startServer(t, serverOptions{maxMsg: 1024})
	tok := s.token(t, "bad", auth.MintOptions{})
	cases := []struct {
		name, proto string
		frame       []byte
		binary      bool
		code        int
	}{
		{"malformed json", ProtocolJSON, []byte(`{"type":`), false, 1007},
		{"unknown type", ProtocolJSON, []byte(`{"type":"dance"}`), false, 1007},
		{"binary on json", ProtocolJSON, []byte{1, 2}, true, 1003},
		{"too big", ProtocolJSON, []byte(`{"type":"ping","x":"` + strings.Repeat("a", 2000) + `"}`), false, 1009},
		{"raw frame without handler", "", []byte("hello"), false, 1011},
	}
	bystander := mustDial(t, s.wsURL("bad", tok), ProtocolJSON)
	bystander.read()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := mustDial(t, s.wsURL("bad", tok), c.proto)
			if c.proto != "" {
				cl.read()
			}
			if c.binary {
				cl.ws.WriteBinary(c.frame)
			} else {
				cl.ws.WriteText(c.frame)
			}
			if ce := cl.expectClose(); ce.code != c.code || ce.reason == "" {
				t.Fatalf("closed with %d %q, want %d and a reason", ce.code, ce.reason, c.code)
			}
		})
	}
	bystander.send(`{"type":"ping"}`)
	if got := bystander.read(); got != `{"type":"pong"}` {
		t.Fatalf("bystander harmed: %s", got)
	}
}

var _ = http.StatusOK

// TestHugeAckIDDoesNotDropLaterSends: after ackId 2^64-1, the sends with
// ackIds 1..10 are acknowledged and delivered (they used to be answered
// Duplicate and silently not sent); a real repeat is still a Duplicate.
func TestHugeAckIDDoesNotDropLaterSends(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "acks", auth.MintOptions{Roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"}})
	a := mustDial(t, s.wsURL("acks", tok), ProtocolJSON)
	a.read() // connected
	a.send(`{"type":"joinGroup","group":"g","ackId":18446744073709551615}`)
	if got := a.read(); got != `{"type":"ack","ackId":18446744073709551615,"success":true}` {
		t.Fatalf("join ack = %s", got)
	}
	for id := 1; id <= 10; id++ {
		a.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"text","data":"m%d"}`, id, id))
		if got, want := a.read(), fmt.Sprintf(`{"type":"message","from":"group","group":"g","dataType":"text","data":"m%d"}`, id); got != want {
			t.Fatalf("ackId %d: delivered %s, want %s", id, got, want)
		}
		if got, want := a.read(), fmt.Sprintf(`{"type":"ack","ackId":%d,"success":true}`, id); got != want {
			t.Fatalf("ackId %d: ack %s, want %s", id, got, want)
		}
	}
	a.send(`{"type":"sendToGroup","group":"g","ackId":7,"dataType":"text","data":"again"}`)
	ack := a.readJSON()
	if ack["success"] != false || ack["error"].(map[string]any)["name"] != "Duplicate" {
		t.Fatalf("repeated ackId 7: %v", ack)
	}
}
