package webpubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/upstream"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// heldHandler is an upstream whose user events wait until the test answers
// them (or their context ends); it has a handler for every event but
// "nohandler".
type heldHandler struct{ calls chan *heldCall }

type heldCall struct {
	event, contentType string
	data               []byte
	ctx                context.Context
	answer             chan heldAnswer
}

type heldAnswer struct {
	resp *upstream.EventResponse
	err  error
}

func newHeldHandler() *heldHandler { return &heldHandler{calls: make(chan *heldCall, 64)} }

func (h *heldHandler) Connect(context.Context, upstream.ConnectRequest) (*upstream.ConnectResponse, error) {
	return nil, upstream.ErrNoHandler
}
func (h *heldHandler) Connected(upstream.Conn)             {}
func (h *heldHandler) HasUserHandler(_, event string) bool { return event != "nohandler" }
func (h *heldHandler) UserEvent(ctx context.Context, _ upstream.Conn, event, ct string, data []byte) (*upstream.EventResponse, error) {
	c := &heldCall{event: event, contentType: ct, data: bytes.Clone(data), ctx: ctx, answer: make(chan heldAnswer, 1)}
	h.calls <- c
	select {
	case a := <-c.answer:
		return a.resp, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *heldHandler) next(t *testing.T) *heldCall {
	t.Helper()
	select {
	case c := <-h.calls:
		return c
	case <-time.After(wstest.Timeout):
		t.Fatal("no user event reached the handler")
	}
	return nil
}

func (c *heldCall) reply(ct string, body string) {
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	c.answer <- heldAnswer{resp: &upstream.EventResponse{Status: http.StatusOK, ContentType: ct, Body: b}}
}

// ended waits until the call's context ends (its request was cancelled).
func (c *heldCall) ended(t *testing.T, what string) {
	t.Helper()
	select {
	case <-c.ctx.Done():
	case <-time.After(wstest.Timeout):
		t.Fatalf("%s: the handler's request was not cancelled", what)
	}
}

// readReply reads frames until a non-system one and returns it.
func (c *client) readReply() string {
	c.t.Helper()
	for {
		f := c.read()
		if !strings.Contains(f, `"type":"system"`) {
			return f
		}
	}
}

// TestInvokeAnswers: an invoke goes to the handler as the user event with
// the data's Content-Type, and the handler's answer comes back as an
// invokeResponse with the same invocationId and a dataType by the answer's
// Content-Type; on the reliable protocol it carries a sequenceId like any
// data message.
func TestInvokeAnswers(t *testing.T) {
	for _, proto := range []string{ProtocolJSON, ProtocolJSONReliable} {
		t.Run(proto, func(t *testing.T) {
			h := newHeldHandler()
			s := startServer(t, serverOptions{up: h})
			c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{UserID: "u"})), proto)
			c.read() // connected
			cases := []struct {
				req, event, ct, data string
				ansCT, ansBody       string
				want                 string
			}{
				{`{"type":"invoke","invocationId":"1","target":"event","event":"echo","dataType":"json","data":{"a":1}}`,
					"echo", "application/json", `{"a":1}`, "application/json; charset=utf-8", `{"ok":true}`,
					`"type":"invokeResponse","invocationId":"1","success":true,"dataType":"json","data":{"ok":true}}`},
				{`{"type":"invoke","invocationId":"two","target":"event","event":"greet","dataType":"text","data":"hi"}`,
					"greet", "text/plain", "hi", "text/plain; charset=utf-8", "hello \"you\"",
					`"type":"invokeResponse","invocationId":"two","success":true,"dataType":"text","data":"hello \"you\""}`},
				{`{"type":"invoke","invocationId":"3","event":"bin","dataType":"binary","data":"AAE="}`,
					"bin", "application/octet-stream", "\x00\x01", "application/octet-stream", "\x02\x03",
					`"type":"invokeResponse","invocationId":"3","success":true,"dataType":"binary","data":"AgM="}`},
				{`{"type":"invoke","invocationId":"4","target":"event","event":"ping"}`,
					"ping", "application/octet-stream", "", "", "",
					`"type":"invokeResponse","invocationId":"4","success":true}`},
			}
			for i, tc := range cases {
				c.send(tc.req)
				call := h.next(t)
				if call.event != tc.event || call.contentType != tc.ct || string(call.data) != tc.data {
					t.Fatalf("case %d: handler got event %q, %q, %q; want %q, %q, %q", i, call.event, call.contentType, call.data, tc.event, tc.ct, tc.data)
				}
				call.reply(tc.ansCT, tc.ansBody)
				want := "{" + tc.want
				if proto == ProtocolJSONReliable {
					want = fmt.Sprintf(`{"sequenceId":%d,`, i+1) + tc.want
				}
				if got := c.read(); got != want {
					t.Fatalf("case %d: got  %s\nwant %s", i, got, want)
				}
			}
			if got := metrictest.Value(t, s.reg, "switchboard_invocations_total", "outcome", "success"); got != 4 {
				t.Fatalf("invocations_total{outcome=success} = %v, want 4", got)
			}
		})
	}
}

// TestInvokeErrors: a failing handler, a missing handler and a bad request
// each get an invokeResponse error naming the cause; an invoke without an
// invocationId cannot be answered and closes the connection with 1007.
func TestInvokeErrors(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSON)
	c.read()
	expect := func(id, name, msg string) {
		t.Helper()
		want := `{"type":"invokeResponse","invocationId":"` + id + `","success":false,"error":{"name":"` + name + `","message":` + msg + `}}`
		if got := c.read(); got != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
	c.send(`{"type":"invoke","invocationId":"e1","target":"event","event":"order","dataType":"text","data":"x"}`)
	h.next(t).answer <- heldAnswer{err: &upstream.RejectError{Status: 400, Reason: "order not found"}}
	expect("e1", "EventHandlerError", `"the event handler answered 400: order not found"`)

	c.send(`{"type":"invoke","invocationId":"e2","target":"event","event":"order"}`)
	h.next(t).answer <- heldAnswer{err: &upstream.HandlerError{Event: "user", URL: "http://secret.example/h", Err: upstream.ErrUnavailable}}
	expect("e2", "EventHandlerError", `"the event handler is unavailable"`)

	c.send(`{"type":"invoke","invocationId":"e3","target":"event","event":"nohandler"}`)
	expect("e3", "NoEventHandler", `"no event handler is configured for event \"nohandler\" in hub \"chat\""`)
	c.send(`{"type":"invoke","invocationId":"e4","target":"group","event":"order"}`)
	expect("e4", "BadRequest", `"invoke target \"group\" is not supported: the only target is \"event\""`)
	c.send(`{"type":"invoke","invocationId":"e5","target":"event","event":"9lives"}`)
	expect("e5", "BadRequest", `"invalid event name \"9lives\""`)
	c.send(`{"type":"invoke","invocationId":"e6","target":"event","event":"order","dataType":"binary","data":"@@"}`)
	f := c.readJSON()
	if e, _ := f["error"].(map[string]any); f["invocationId"] != "e6" || e["name"] != "BadRequest" || !strings.Contains(e["message"].(string), "base64") {
		t.Fatalf("bad data: %v", f)
	}
	for outcome, n := range map[string]float64{"handler_error": 2, "no_handler": 1, "refused": 3} {
		if got := metrictest.Value(t, s.reg, "switchboard_invocations_total", "dialect", "json", "outcome", outcome); got != n {
			t.Errorf("invocations_total{outcome=%s} = %v, want %v", outcome, got, n)
		}
	}
	c.send(`{"type":"invoke","target":"event","event":"order"}`)
	if ce := c.expectClose(); ce.code != 1007 || !strings.Contains(ce.reason, "invocationId") {
		t.Fatalf("invoke without invocationId: closed %d %q, want 1007 naming invocationId", ce.code, ce.reason)
	}
}

// TestInvokeTimeout: an invocation whose handler does not answer within
// invoke.timeout gets a Timeout error, and its request to the handler ends.
func TestInvokeTimeout(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h, invoke: InvokeConfig{Timeout: 50 * time.Millisecond}})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSON)
	c.read()
	c.send(`{"type":"invoke","invocationId":"slow","target":"event","event":"slow"}`)
	call := h.next(t)
	want := `{"type":"invokeResponse","invocationId":"slow","success":false,"error":{"name":"Timeout","message":"the event handler did not answer within 50ms (invoke.timeout)"}}`
	if got := c.read(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	call.ended(t, "after the timeout")
	if got := metrictest.Value(t, s.reg, "switchboard_invocations_total", "outcome", "timeout"); got != 1 {
		t.Fatalf("invocations_total{outcome=timeout} = %v, want 1", got)
	}
}

// TestInvokeCancel: cancelInvocation cancels the handler's request and
// drops the answer: the client gets no invokeResponse for it. An unknown
// id is ignored.
func TestInvokeCancel(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSON)
	c.read()
	c.send(`{"type":"invoke","invocationId":"c1","target":"event","event":"slow"}`)
	call := h.next(t)
	c.send(`{"type":"cancelInvocation","invocationId":"unknown"}`)
	c.send(`{"type":"cancelInvocation","invocationId":"c1"}`)
	call.ended(t, "after cancelInvocation")
	eventually.True(t, "the cancelled invocation to end", wstest.Timeout, func() bool {
		return metrictest.Value(t, s.reg, "switchboard_invocations_total", "outcome", "cancelled") == 1
	})
	c.send(`{"type":"ping"}`)
	if got := c.read(); got != `{"type":"pong"}` {
		t.Fatalf("after the cancel the client got %s, want only the pong", got)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_invocations_in_flight"); got != 0 {
		t.Fatalf("invocations_in_flight = %v after the cancel, want 0", got)
	}
}

// TestInvokeLimits: invocations run beside the connection's other requests
// (a held one delays neither a ping nor a join), at most invoke.max_per_conn
// at once; one more is refused with TooManyRequests, and an invocationId in
// flight with Duplicate.
func TestInvokeLimits(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h, invoke: InvokeConfig{MaxPerConn: 2}})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{Roles: []string{"webpubsub.joinLeaveGroup"}})), ProtocolJSON)
	c.read()
	c.send(`{"type":"invoke","invocationId":"a","target":"event","event":"slow","dataType":"text","data":"a"}`)
	c.send(`{"type":"invoke","invocationId":"b","target":"event","event":"slow","dataType":"text","data":"b"}`)
	b := h.next(t) // the two run at once: either may reach the handler first
	if string(b.data) != "b" {
		b = h.next(t)
	}
	c.send(`{"type":"invoke","invocationId":"a","target":"event","event":"slow"}`)
	c.send(`{"type":"invoke","invocationId":"c","target":"event","event":"slow"}`)
	c.send(`{"type":"ping"}`)
	c.send(`{"type":"joinGroup","group":"g","ackId":1}`)
	for _, want := range []string{
		`{"type":"invokeResponse","invocationId":"a","success":false,"error":{"name":"Duplicate","message":"invocation \"a\" is already in flight on this connection"}}`,
		`{"type":"invokeResponse","invocationId":"c","success":false,"error":{"name":"TooManyRequests","message":"the connection already has 2 invocations in flight (invoke.max_per_conn); this one was not started"}}`,
		`{"type":"pong"}`,
		`{"type":"ack","ackId":1,"success":true}`,
	} {
		if got := c.read(); got != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
	b.reply("text/plain", "done")
	if got := c.read(); got != `{"type":"invokeResponse","invocationId":"b","success":true,"dataType":"text","data":"done"}` {
		t.Fatalf("answer of b: %s", got)
	}
	c.send(`{"type":"invoke","invocationId":"c","target":"event","event":"slow"}`)
	if call := h.next(t); call.event != "slow" {
		t.Fatalf("after b was answered, c reached the handler as %q", call.event)
	}
}

// TestInvokeAnswerAfterRecovery: the socket of a reliable client drops
// while its invocation waits for the handler; the invocation keeps running,
// and its answer reaches the client after it recovers, once: acknowledged,
// it is not replayed by a later recovery.
func TestInvokeAnswerAfterRecovery(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h, recovery: time.Minute})
	tok := s.token(t, "rel", auth.MintOptions{UserID: "u"})
	c := mustDial(t, s.wsURL("rel", tok), ProtocolJSONReliable)
	var hello dataFrame
	json.Unmarshal([]byte(c.read()), &hello)
	resume := s.wsURL("rel", tok) + "&awps_connection_id=" + url.QueryEscape(hello.ConnectionID) +
		"&awps_reconnection_token=" + url.QueryEscape(hello.ReconnectionToken)
	c.send(`{"type":"invoke","invocationId":"r1","target":"event","event":"slow"}`)
	call := h.next(t)
	c.conn.Close() // drop TCP with no close frame
	hub, _ := s.node.Hub("rel")
	conn, err := hub.Conn(hello.ConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	// The server notices the drop (the conn is detached, not ended) before
	// the handler answers: the answer waits in the replay buffer.
	eventually.True(t, "the drop to be noticed", wstest.Timeout, func() bool { return !conn.Linked() })
	if call.ctx.Err() != nil {
		t.Fatal("the drop of a reliable client's socket cancelled its invocation")
	}
	call.reply("text/plain", "late")
	eventually.True(t, "the answer to be delivered", wstest.Timeout, func() bool {
		return metrictest.Value(t, s.reg, "switchboard_invocations_total", "outcome", "success") == 1
	})

	c2 := mustDial(t, resume, ProtocolJSONReliable)
	want := `{"sequenceId":1,"type":"invokeResponse","invocationId":"r1","success":true,"dataType":"text","data":"late"}`
	if got := c2.readReply(); got != want {
		t.Fatalf("after recovery got %s\nwant %s", got, want)
	}
	c2.send(`{"type":"sequenceAck","sequenceId":1}`)
	c2.send(`{"type":"ping"}`)
	if got := c2.readReply(); got != `{"type":"pong"}` {
		t.Fatalf("got %s, want the pong", got)
	}
	c2.conn.Close()
	eventually.True(t, "the second drop to be noticed", wstest.Timeout, func() bool { return !conn.Linked() })
	c3 := mustDial(t, resume, ProtocolJSONReliable)
	c3.send(`{"type":"ping"}`)
	if got := c3.readReply(); got != `{"type":"pong"}` {
		t.Fatalf("the second recovery got %s: an acknowledged answer was replayed", got)
	}
}

// TestInvokeCancelledWhenConnectionEnds: when a (non-reliable) client goes
// away, its invocations in flight are cancelled: nobody is left to answer.
func TestInvokeCancelledWhenConnectionEnds(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSON)
	c.read()
	c.send(`{"type":"invoke","invocationId":"x","target":"event","event":"slow"}`)
	call := h.next(t)
	c.conn.Close()
	call.ended(t, "after the client went away")
	eventually.True(t, "the invocation to be counted as closed", wstest.Timeout, func() bool {
		return metrictest.Value(t, s.reg, "switchboard_invocations_total", "outcome", "closed") == 1
	})
}

// TestInvokeCancelledWhenRecoveryWindowEnds: a reliable client that drops
// and does not come back within the recovery window has its invocations
// cancelled when the session ends (the node's OnConnEnd), not left to run
// to their timeout.
func TestInvokeCancelledWhenRecoveryWindowEnds(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h, recovery: 20 * time.Millisecond})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSONReliable)
	c.read()
	c.send(`{"type":"invoke","invocationId":"x","target":"event","event":"slow"}`)
	call := h.next(t)
	c.conn.Close()
	call.ended(t, "after the recovery window")
}

// TestInvokeMemoryPerInvocation: an invocation waiting for its handler
// costs its goroutine, its context and its entry; 200 of them on one
// connection stay under 16 KiB each (heap and stacks), the wire bytes of
// their requests included.
func TestInvokeMemoryPerInvocation(t *testing.T) {
	const n = 200
	h := &heldHandler{calls: make(chan *heldCall, n)}
	s := startServer(t, serverOptions{up: h, invoke: InvokeConfig{MaxPerConn: n}})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{})), ProtocolJSON)
	c.read()
	c.send(`{"type":"invoke","invocationId":"warm","target":"event","event":"slow"}`)
	h.next(t).reply("", "")
	c.read()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		c.send(fmt.Sprintf(`{"type":"invoke","invocationId":"%d","target":"event","event":"slow","dataType":"text","data":"x"}`, i))
	}
	calls := make([]*heldCall, n)
	for i := range calls {
		calls[i] = h.next(t)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
	t.Logf("%d invocations in flight: %d bytes, %d per invocation", n, used, used/n)
	if used/n > 16<<10 {
		t.Errorf("%d bytes per invocation in flight, want at most 16 KiB", used/n)
	}
	for _, call := range calls {
		call.reply("", "")
	}
}
