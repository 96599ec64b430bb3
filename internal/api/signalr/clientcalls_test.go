package signalr_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/tinylib/msgp/msgp"
)

// connectProto opens a conn that speaks hub protocol proto ("json" or "messagepack").
func (e *env) connectProto(hub, proto string) client {
	e.t.Helper()
	l := &link{}
	c, err := e.hub(hub).Connect(core.ConnInfo{Protocol: proto, Codec: codec{}, Dialect: "test"}, l)
	if err != nil {
		e.t.Fatal(err)
	}
	return client{c, l}
}

// frames drains c and decodes the core.Framed frames queued to it in protocol p.
func (c client) frames(t *testing.T, p hubproto.Protocol) []hubproto.Message {
	t.Helper()
	var out []hubproto.Message
	for _, body := range c.received() {
		buf, ok := strings.CutPrefix(body, core.Framed.String()+":")
		if !ok {
			t.Fatalf("queued %q, not a framed message", body)
		}
		for b := []byte(buf); len(b) > 0; {
			msg, rest, err := p.Next(b, 0)
			if err != nil {
				t.Fatalf("frame %q: %v", buf, err)
			}
			m, err := p.Decode(msg)
			if err != nil {
				t.Fatalf("frame %q: %v", buf, err)
			}
			m.Raw = append([]byte(nil), m.Raw...)
			out = append(out, m)
			b = rest
		}
	}
	return out
}

// awaitInvocation polls c until the invocation of an :invoke call is queued and returns it.
func (c client) awaitInvocation(t *testing.T, p hubproto.Protocol) hubproto.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ms := c.frames(t, p); len(ms) > 0 {
			if len(ms) != 1 || ms[0].Kind != hubproto.Invocation || ms[0].InvocationID == "" {
				t.Fatalf("queued %+v, want one invocation with an id", ms)
			}
			return ms[0]
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no invocation was queued")
	return hubproto.Message{}
}

// goReq sends a request from another goroutine; the answer comes on the channel.
func (e *env) goReq(method, target, body string) <-chan reply {
	tok := e.token(target)
	out := make(chan reply, 1)
	go func() {
		r, _ := http.NewRequest(method, e.srv.URL+target, strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		resp, err := e.srv.Client().Do(r)
		if err != nil {
			out <- reply{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}()
	return out
}

func waitReply(t *testing.T, ch <-chan reply) reply {
	t.Helper()
	select {
	case r := <-ch:
		if r.status < 0 {
			t.Fatal(r.body)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no answer")
	}
	return reply{}
}

// TestInvoke: the client gets an Invocation with an id, in its protocol, and the REST call
// answers with its Completion: a result (MessagePack converted to JSON), void, or an error.
func TestInvoke(t *testing.T) {
	t.Parallel()
	msgpackResult := msgp.AppendMapHeader(nil, 2)
	msgpackResult = msgp.AppendString(msgpackResult, "ok")
	msgpackResult = msgp.AppendBool(msgpackResult, true)
	msgpackResult = msgp.AppendString(msgpackResult, "n")
	msgpackResult = msgp.AppendInt64(msgpackResult, 9007199254740993)
	tests := []struct {
		name   string
		proto  hubproto.Protocol
		answer core.ClientResult
		status int
		code   string
		body   string // the exact JSON body of a 200
	}{
		{"json result", hubproto.JSON, core.ClientResult{HasResult: true, Result: []byte(`{"a":[1,"x"]}`)}, 200, "", `{"result":{"a":[1,"x"]},"protocol":"json"}`},
		{"json null", hubproto.JSON, core.ClientResult{HasResult: true, Result: []byte(`null`)}, 200, "", `{"result":null,"protocol":"json"}`},
		{"void", hubproto.JSON, core.ClientResult{}, 200, "", `{"protocol":"json"}`},
		{"messagepack result", hubproto.MessagePack, core.ClientResult{HasResult: true, Result: msgpackResult}, 200, "", `{"result":{"ok":true,"n":9007199254740993},"protocol":"messagepack"}`},
		{"client error", hubproto.JSON, core.ClientResult{Error: "Client didn't provide a result."}, 500, "Error.Invocation.Failed", ""},
		{"unreadable messagepack result", hubproto.MessagePack, core.ClientResult{HasResult: true, Result: []byte{0xc1}}, 500, "Error.Invocation.Failed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c := e.connectProto("chat", tt.proto.Name())
			done := e.goReq("POST", "/api/hubs/chat/connections/"+c.ID()+"/:invoke?api-version=2024-12-01",
				`{"Target":"ask","Arguments":["q",1]}`)
			inv := c.awaitInvocation(t, tt.proto)
			if inv.Target != "ask" || inv.Arguments != 2 {
				t.Fatalf("invocation %+v", inv)
			}
			if !c.ResolveResult(inv.InvocationID, tt.answer) {
				t.Fatal("nobody waits for the answer")
			}
			r := waitReply(t, done)
			if r.status != tt.status || r.header.Get("x-ms-error-code") != tt.code {
				t.Fatalf("answer %d %q %s", r.status, r.header.Get("x-ms-error-code"), r.body)
			}
			if tt.body != "" && r.body != tt.body {
				t.Fatalf("body %s, want %s", r.body, tt.body)
			}
			if tt.answer.Error != "" && !strings.Contains(r.body, tt.answer.Error) {
				t.Fatalf("the error body %s does not carry the client's error", r.body)
			}
			if n := c.PendingResults(); n != 0 {
				t.Fatalf("%d invocations still registered", n)
			}
		})
	}
}

// TestInvokeEnds: an :invoke whose client never answers ends at the deadline, one whose
// connection closes ends at once, and neither leaves anything registered; a late answer is
// refused.
func TestInvokeEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{invokeTimeout: 50 * time.Millisecond})
	target := func(c client) string { return "/api/hubs/chat/connections/" + c.ID() + "/:invoke" }

	silent := e.connectProto("chat", "json")
	r := e.req("POST", target(silent), invocation)
	if r.status != 500 || r.header.Get("x-ms-error-code") != "Error.Invocation.Timeout" {
		t.Fatalf("timeout: %d %q %s", r.status, r.header.Get("x-ms-error-code"), r.body)
	}
	inv := silent.awaitInvocation(t, hubproto.JSON)
	if silent.PendingResults() != 0 || silent.ResolveResult(inv.InvocationID, core.ClientResult{}) {
		t.Fatal("the timed-out invocation is still registered")
	}

	e2 := newEnv(t, envOptions{invokeTimeout: time.Hour})
	leaving := e2.connectProto("chat", "messagepack")
	done := e2.goReq("POST", target(leaving), invocation)
	leaving.awaitInvocation(t, hubproto.MessagePack)
	leaving.Close("bye")
	r = waitReply(t, done)
	if r.status != 500 || r.header.Get("x-ms-error-code") != "Error.Invocation.ConnectionClosed" {
		t.Fatalf("closed: %d %q %s", r.status, r.header.Get("x-ms-error-code"), r.body)
	}
	if n := leaving.PendingResults(); n != 0 {
		t.Fatalf("%d invocations registered on an ended conn", n)
	}
}

// TestInvokeRefusals: the refusals come before anything reaches the client.
func TestInvokeRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.connectProto("chat", "json")
	plain := e.connect("chat", "") // no hub protocol
	base := "/api/hubs/chat/connections/" + c.ID() + "/:invoke"
	tests := []struct {
		name, target, body string
		hdr                []string
		status             int
		code               string
	}{
		{"unknown connection", "/api/hubs/chat/connections/nobody/:invoke", invocation, nil, 404, "Error.Connection.NotExisted"},
		{"no body", base, "", nil, 400, "Error.BadRequest"},
		{"no target", base, `{"arguments":[1]}`, nil, 400, "Error.BadRequest"},
		{"arguments not an array", base, `{"target":"t","arguments":1}`, nil, 400, "Error.BadRequest"},
		{"binary body", base, "\x81", []string{"Content-Type", "application/octet-stream"}, 415, "Error.UnsupportedMediaType"},
		{"not a hub-protocol conn", "/api/hubs/chat/connections/" + plain.ID() + "/:invoke", invocation, nil, 400, "Error.BadRequest"},
	}
	for _, tt := range tests {
		r := e.req("POST", tt.target, tt.body, tt.hdr...)
		if r.status != tt.status || r.header.Get("x-ms-error-code") != tt.code {
			t.Errorf("%s: %d %q %s, want %d %q", tt.name, r.status, r.header.Get("x-ms-error-code"), r.body, tt.status, tt.code)
		}
	}
	if got := c.received(); len(got) != 0 {
		t.Fatalf("refused calls reached the client: %q", got)
	}
	if c.PendingResults() != 0 {
		t.Fatal("a refused call left an invocation registered")
	}
}

// TestStreams: items go to the connection as StreamItems of the stream id, in its protocol;
// completed=true and :complete end the stream, with the reason (or the SDK's error) as the
// Completion's error.
func TestStreams(t *testing.T) {
	t.Parallel()
	for _, p := range []hubproto.Protocol{hubproto.JSON, hubproto.MessagePack} {
		t.Run(p.Name(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c := e.connectProto("chat", p.Name())
			base := "/api/hubs/chat/connections/" + c.ID() + "/streams/"
			calls := []struct{ target, body string }{
				{base + "st1/:send?api-version=2024-12-01", `{"n":1}`},
				{base + "st1/:send?completed=true", `"last"`},
				{base + "st2/:send", `[1,2]`},
				{base + "st2/:complete?reason=broken", ""},
				{base + "st3/:complete", ""},
				{base + "st4/:complete?error=sdk", ""},
				{base + "st5/:send?completed=TRUE", ""},
			}
			for _, call := range calls {
				if r := e.req("POST", call.target, call.body); r.status != 202 {
					t.Fatalf("POST %s: %d %s", call.target, r.status, r.body)
				}
			}
			ms := c.frames(t, p)
			type got struct {
				kind      hubproto.Kind
				id, error string
			}
			want := []got{
				{hubproto.StreamItem, "st1", ""}, {hubproto.StreamItem, "st1", ""}, {hubproto.Completion, "st1", ""},
				{hubproto.StreamItem, "st2", ""}, {hubproto.Completion, "st2", "broken"},
				{hubproto.Completion, "st3", ""}, {hubproto.Completion, "st4", "sdk"}, {hubproto.Completion, "st5", ""},
			}
			if len(ms) != len(want) {
				t.Fatalf("got %d messages, want %d: %+v", len(ms), len(want), ms)
			}
			for i, m := range ms {
				if g := (got{m.Kind, m.InvocationID, m.Error}); g != want[i] || m.HasResult {
					t.Fatalf("message %d = %+v, want %+v", i, m, want[i])
				}
			}
			// The item itself, converted for MessagePack.
			var item []byte
			if p == hubproto.JSON {
				var v struct{ Item json.RawMessage }
				json.Unmarshal(ms[0].Raw, &v)
				item = v.Item
			} else {
				_, b, _ := msgp.ReadArrayHeaderBytes(ms[0].Raw)
				for range 3 {
					b, _ = msgp.Skip(b)
				}
				item, _ = hubproto.AppendJSONFromMsgpack(nil, b)
			}
			if string(item) != `{"n":1}` {
				t.Fatalf("item %s", item)
			}
		})
	}
}

func TestStreamRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.connectProto("chat", "json")
	base := "/api/hubs/chat/connections/" + c.ID() + "/streams/"
	tests := []struct {
		target, body string
		status       int
		code         string
	}{
		{"/api/hubs/chat/connections/nobody/streams/s/:send", `1`, 404, "Error.Connection.NotExisted"},
		{"/api/hubs/chat/connections/nobody/streams/s/:complete", "", 404, "Error.Connection.NotExisted"},
		{base + "s/:send", "", 400, "Error.BadRequest"},
		{base + "s/:send", `{"a":`, 400, "Error.BadRequest"},
		{base + "s/:send?completed=yes", `1`, 400, "Error.BadRequest"},
		{base + "%20%20/:send", `1`, 400, "Error.BadRequest"},
		{base + strings.Repeat("x", 101) + "/:complete", "", 400, "Error.BadRequest"},
	}
	for _, tt := range tests {
		r := e.req("POST", tt.target, tt.body)
		if r.status != tt.status || r.header.Get("x-ms-error-code") != tt.code {
			t.Errorf("POST %s %q: %d %q %s, want %d %q", tt.target, tt.body, r.status, r.header.Get("x-ms-error-code"), r.body, tt.status, tt.code)
		}
	}
	if got := c.received(); len(got) != 0 {
		t.Fatalf("refused calls reached the client: %q", got)
	}
}

// TestExecute: the commands run in order on the connections the filter selects, and only
// on them.
func TestExecute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	hub := e.hub("chat")
	a1, a2, b := e.connect("chat", "listener-1"), e.connect("chat", "listener-2"), e.connect("chat", "other")
	if err := hub.JoinGroup(a2.Conn, "old"); err != nil {
		t.Fatal(err)
	}
	body := `[{"type":"JoinGroup","group":"news"},
		{"Type":"sendmessage","Message":{"Target":"hello","Arguments":["x"]}},
		{"type":"LeaveGroup","group":"old"}]`
	r := e.req("POST", "/api/hubs/chat/:execute?api-version=2024-12-01&filter="+escape(`startswith(userId, 'listener-')`), body)
	if r.status != 202 {
		t.Fatalf("execute: %d %s", r.status, r.body)
	}
	wantMsg := `json:{"type":1,"target":"hello","arguments":["x"]}`
	for _, c := range []client{a1, a2} {
		if !c.InGroup("news") || c.InGroup("old") {
			t.Fatalf("%s groups %v", c.UserID(), c.Groups())
		}
		if got := c.received(); len(got) != 1 || got[0] != wantMsg {
			t.Fatalf("%s received %q", c.UserID(), got)
		}
	}
	if b.InGroup("news") || len(b.received()) != 0 {
		t.Fatal("a connection outside the filter was affected")
	}

	// No filter: every connection; CloseConnection closes with the reason.
	r = e.req("POST", "/api/hubs/chat/:execute", `[{"type":"CloseConnection","reason":"maintenance"}]`)
	if r.status != 202 {
		t.Fatalf("execute close: %d %s", r.status, r.body)
	}
	for _, c := range []client{a1, a2, b} {
		if !c.Ended() {
			t.Fatalf("%s not closed", c.UserID())
		}
		if got := c.link.closes(); len(got) != 1 || got[0] != "maintenance" {
			t.Fatalf("%s closes %q", c.UserID(), got)
		}
	}
}

// TestExecuteRefusals: a bad filter or command is a 400 that names it, and nothing runs.
func TestExecuteRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.connect("chat", "u1")
	tests := []struct{ name, query, body, mention string }{
		{"bad filter", "?filter=" + escape("userId eq"), `[]`, "filter"},
		{"unknown field in filter", "?filter=" + escape("color eq 'red'"), `[]`, "filter"},
		{"no body", "", "", "required"},
		{"not an array", "", `{"type":"JoinGroup","group":"g"}`, "array"},
		{"not JSON", "", `[{"type":`, "JSON"},
		{"no type", "", `[{"group":"g"}]`, "Command 0"},
		{"unknown type", "", `[{"type":"JoinGroup","group":"g"},{"type":"Explode"}]`, "Command 1"},
		{"join without group", "", `[{"type":"JoinGroup"}]`, "group"},
		{"leave with blank group", "", `[{"type":"LeaveGroup","group":"  "}]`, "group"},
		{"send without message", "", `[{"type":"SendMessage"}]`, "message"},
		{"send without target", "", `[{"type":"SendMessage","message":{"arguments":[]}}]`, "Target"},
		{"type not a string", "", `[{"type":1}]`, "type"},
	}
	for _, tt := range tests {
		r := e.req("POST", "/api/hubs/chat/:execute"+tt.query, tt.body)
		if r.status != 400 || r.header.Get("x-ms-error-code") != "Error.BadRequest" || !strings.Contains(r.body, tt.mention) {
			t.Errorf("%s: %d %q %s, want 400 mentioning %q", tt.name, r.status, r.header.Get("x-ms-error-code"), r.body, tt.mention)
		}
	}
	if c.InGroup("g") || len(c.received()) != 0 || c.Ended() {
		t.Fatal("a refused :execute changed something")
	}
	if n := metrictest.Value(t, e.reg, "switchboard_rest_requests_total", "operation", "SignalRService_Execute", "status", "400"); n != float64(len(tests)) {
		t.Fatalf("counted %v refused :execute calls, want %d", n, len(tests))
	}
}

func escape(s string) string {
	return strings.NewReplacer(" ", "%20", "'", "%27", "(", "%28", ")", "%29", ",", "%2C").Replace(s)
}
