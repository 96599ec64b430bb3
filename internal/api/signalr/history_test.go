package signalr_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tinylib/msgp/msgp"

	"github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/api/webpubsub"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// historyEnv is env over a node that keeps history in a real log: hub chat keeps room:* (100
// messages) and small:* (2 messages), in the "signalr" namespace of the service, as the server
// wires it.
type historyEnv struct {
	*env
	svc     *history.Service
	histReg *prometheus.Registry // the service's metrics
}

func newHistoryEnv(t *testing.T) *historyEnv {
	t.Helper()
	histReg := prometheus.NewRegistry()
	svc := openHistory(t, histReg)
	e := &env{t: t, reg: prometheus.NewRegistry()}
	var err error
	ns := svc.Namespace("signalr")
	e.node, err = core.NewNode(core.Config{Registerer: prometheus.NewRegistry(), History: ns})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler
	h, e.node, e.keys = newHandler(t, signalr.Config{Node: e.node, Registerer: e.reg,
		History: ns, Idempotency: svc.Idempotency().Namespace("signalr")})
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return &historyEnv{env: e, svc: svc, histReg: histReg}
}

// openHistory opens a history service in a temporary directory, as the server does.
func openHistory(t *testing.T, reg *prometheus.Registry) *history.Service {
	t.Helper()
	keep := func(n int) history.Retention { return history.Retention{MaxMessages: n, MaxAge: time.Hour} }
	svc, err := history.New(history.Config{
		Dir: t.TempDir(),
		Policies: history.Policies{"chat": {
			{Pattern: "room:*", Retention: keep(100)},
			{Pattern: "small:*", Retention: keep(2)},
		}},
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// args is a JSON send of target "m" with arguments [n].
func args(n int) string { return fmt.Sprintf(`{"target":"m","arguments":[%d]}`, n) }

// TestIdempotentSends sends every kind of message twice with one key: the retry answers 202
// with Idempotent-Replayed and the first answer's offset, and nothing is delivered again.
func TestIdempotentSends(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	c := e.connect("chat", "u1")
	for _, g := range []string{"room:1", "plain"} {
		if err := e.hub("chat").JoinGroup(c.Conn, g); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, target string
		durable      bool // the target keeps history: the answers carry an offset
	}{
		{"broadcast v1", "/api/v1/hubs/chat", false},
		{"broadcast", "/api/hubs/chat/:send?api-version=2022-06-01", false},
		{"user v1", "/api/v1/hubs/chat/users/u1", false},
		{"user", "/api/hubs/chat/users/u1/:send", false},
		{"connection v1", "/api/v1/hubs/chat/connections/{c}", false},
		{"connection", "/api/hubs/chat/connections/{c}/:send", false},
		{"group without history", "/api/hubs/chat/groups/plain/:send", false},
		{"history group v1", "/api/v1/hubs/chat/groups/room:1", true},
		{"history group", "/api/hubs/chat/groups/room:1/:send", true},
	}
	for i, tt := range tests {
		target := strings.ReplaceAll(tt.target, "{c}", url.PathEscape(c.ID()))
		key := "key-" + strconv.Itoa(i)
		first := e.req(http.MethodPost, target, args(i), "Idempotency-Key", key)
		retry := e.req(http.MethodPost, target, args(i), "Idempotency-Key", key)
		for _, r := range []reply{first, retry} {
			if r.status != http.StatusAccepted {
				t.Fatalf("%s: status %d %q", tt.name, r.status, r.body)
			}
		}
		if got := first.header.Get("Idempotent-Replayed"); got != "" {
			t.Errorf("%s: first answer has Idempotent-Replayed %q", tt.name, got)
		}
		if got := retry.header.Get("Idempotent-Replayed"); got != "true" {
			t.Errorf("%s: retry has Idempotent-Replayed %q, want true", tt.name, got)
		}
		off, epoch := first.header.Get("X-Switchboard-Offset"), first.header.Get("X-Switchboard-Epoch")
		if tt.durable && (off == "" || len(epoch) != 16) {
			t.Errorf("%s: first answer has offset %q epoch %q", tt.name, off, epoch)
		}
		if !tt.durable && off != "" {
			t.Errorf("%s: offset %q for a target without history", tt.name, off)
		}
		if got, gotEpoch := retry.header.Get("X-Switchboard-Offset"), retry.header.Get("X-Switchboard-Epoch"); got != off || gotEpoch != epoch {
			t.Errorf("%s: retry has offset %q epoch %q, first %q %q", tt.name, got, gotEpoch, off, epoch)
		}
		want := fmt.Sprintf(`json:{"type":1,"target":"m","arguments":[%d]}`, i)
		if got := c.received(); !slices.Equal(got, []string{want}) {
			t.Errorf("%s: received %q, want it once", tt.name, got)
		}
	}
	const replays = `
# HELP switchboard_history_idempotent_replays_total REST sends answered from the idempotency index, by hub.
# TYPE switchboard_history_idempotent_replays_total counter
switchboard_history_idempotent_replays_total{hub="signalr/chat"} 9
`
	if err := testutil.GatherAndCompare(e.histReg, strings.NewReader(replays), "switchboard_history_idempotent_replays_total"); err != nil {
		t.Error(err)
	}
	// The two history-group sends are the only records of room:1.
	page, err := e.svc.Namespace("signalr").CatchUp("chat", "room:1", 0, "", 10)
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("room:1 holds %d records (%v), want 2", len(page.Records), err)
	}
}

// TestIdempotencyKeyReused: a key sent again with another body or target is 422, in the error
// format of the path's generation; a malformed key is 400.
func TestIdempotencyKeyReused(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	if r := e.req(http.MethodPost, "/api/hubs/chat/groups/room:1/:send", args(1), "Idempotency-Key", "k"); r.status != http.StatusAccepted {
		t.Fatalf("first send: %d %q", r.status, r.body)
	}
	tests := []struct {
		name, target, body, key string
		status                  int
		code                    string
		json                    bool // ErrorDetail body, else plain text
	}{
		{"other body", "/api/hubs/chat/groups/room:1/:send", args(2), "k", 422, "Error.IdempotencyKeyReused", true},
		{"other target", "/api/hubs/chat/groups/room:2/:send", args(1), "k", 422, "Error.IdempotencyKeyReused", true},
		{"other kind", "/api/hubs/chat/:send", args(1), "k", 422, "Error.IdempotencyKeyReused", true},
		{"v1 other body", "/api/v1/hubs/chat/groups/room:1", args(2), "k", 422, "Error.IdempotencyKeyReused", false},
		{"space in key", "/api/hubs/chat/:send", args(1), "a b", 400, "Error.BadRequest", true},
		{"key too long", "/api/v1/hubs/chat", args(1), strings.Repeat("k", 256), 400, "Error.BadRequest", false},
	}
	for _, tt := range tests {
		r := e.req(http.MethodPost, tt.target, tt.body, "Idempotency-Key", tt.key)
		if r.status != tt.status || r.header.Get("x-ms-error-code") != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.header.Get("x-ms-error-code"), tt.status, tt.code)
			continue
		}
		var d struct{ Code, Target, Message string }
		err := json.Unmarshal([]byte(r.body), &d)
		switch {
		case tt.json && (err != nil || d.Code != tt.code || d.Target != "Idempotency-Key"):
			t.Errorf("%s: body %q, want an ErrorDetail of %s about Idempotency-Key", tt.name, r.body, tt.code)
		case !tt.json && (err == nil || !strings.Contains(r.body, "Idempotency-Key")):
			t.Errorf("%s: body %q, want plain text about the Idempotency-Key", tt.name, r.body)
		}
	}
	page, _ := e.svc.Namespace("signalr").CatchUp("chat", "room:1", 0, "", 10)
	if len(page.Records) != 1 {
		t.Errorf("room:1 holds %d records, want the first send only", len(page.Records))
	}
}

// TestIdempotencyNamespaces: a Web PubSub send and a SignalR send with the same key to groups
// of the same name in hubs of the same name are two sends, in two streams, neither refused.
func TestIdempotencyNamespaces(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	node, err := core.NewNode(core.Config{Registerer: prometheus.NewRegistry(), History: e.svc})
	if err != nil {
		t.Fatal(err)
	}
	wps, err := webpubsub.NewHandler(webpubsub.Config{Node: node, Keys: e.keys, History: e.svc,
		Idempotency: e.svc.Idempotency(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	wsrv := httptest.NewServer(wps)
	defer wsrv.Close()
	wpsSend := func(body string) *http.Response {
		t.Helper()
		u := wsrv.URL + "/api/hubs/chat/groups/room:1/:send"
		tok, _ := e.keys.MintServerToken(u, time.Hour)
		r, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "text/plain")
		r.Header.Set("Idempotency-Key", "shared")
		resp, err := wsrv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	c := e.connect("chat", "u1")
	if err := e.hub("chat").JoinGroup(c.Conn, "room:1"); err != nil {
		t.Fatal(err)
	}

	if resp := wpsSend("web pubsub"); resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Switchboard-Offset") != "1" {
		t.Fatalf("Web PubSub send: %d, offset %q", resp.StatusCode, resp.Header.Get("X-Switchboard-Offset"))
	}
	r := e.req(http.MethodPost, "/api/hubs/chat/groups/room:1/:send", args(1), "Idempotency-Key", "shared")
	if r.status != http.StatusAccepted || r.header.Get("Idempotent-Replayed") != "" || r.header.Get("X-Switchboard-Offset") != "1" {
		t.Fatalf("SignalR send with the Web PubSub key: %d replayed %q offset %q, want a send of its own at offset 1",
			r.status, r.header.Get("Idempotent-Replayed"), r.header.Get("X-Switchboard-Offset"))
	}
	if got := c.received(); len(got) != 1 {
		t.Errorf("the SignalR conn received %q, want the SignalR message", got)
	}
	// And the other way: Web PubSub's retry still finds its own first send.
	if resp := wpsSend("web pubsub"); resp.Header.Get("Idempotent-Replayed") != "true" || resp.Header.Get("X-Switchboard-Offset") != "1" {
		t.Errorf("Web PubSub retry: replayed %q offset %q", resp.Header.Get("Idempotent-Replayed"), resp.Header.Get("X-Switchboard-Offset"))
	}
	// The index holds both keys, apart: another request under either is refused only in its own namespace.
	fp := history.Fingerprint("all", "", 0, nil)
	for _, x := range []*history.Idempotency{e.svc.Idempotency(), e.svc.Idempotency().Namespace("signalr")} {
		if _, _, _, err := x.Begin(context.Background(), "chat", "shared", fp); err != history.ErrKeyReused {
			t.Errorf("Begin with another request: %v, want ErrKeyReused", err)
		}
	}
	if _, _, cl, err := e.svc.Idempotency().Namespace("other").Begin(context.Background(), "chat", "shared", fp); err != nil || cl == nil {
		t.Errorf("a third namespace sees the key: %v", err)
	}
}

// messagesPage is the body of a catch-up read on the SignalR listener.
type messagesPage struct {
	Group    string
	Epoch    string
	Offset   uint64
	Oldest   uint64
	Messages []struct {
		Offset     uint64
		Time       string
		FromUserID string `json:"fromUserId"`
		Target     string
		Arguments  json.RawMessage
		Data       *string
	}
	NextLink *string
}

// TestCatchUp pages through a group's stream under both generations, following nextLink.
func TestCatchUp(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	for i := 1; i <= 5; i++ {
		if r := e.req(http.MethodPost, "/api/hubs/chat/groups/room:1/:send", args(i)); r.status != http.StatusAccepted {
			t.Fatalf("send %d: %d %q", i, r.status, r.body)
		}
	}
	for _, start := range []string{
		"/api/hubs/chat/groups/room:1/messages?limit=2&api-version=2022-06-01",
		"/api/v1/hubs/chat/groups/room:1/messages?after=0&limit=2",
	} {
		var offsets []uint64
		var pages int
		target := start
		epoch := ""
		for target != "" && pages < 10 {
			r := e.req(http.MethodGet, target, "")
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %q", target, r.status, r.body)
			}
			var p messagesPage
			if err := json.Unmarshal([]byte(r.body), &p); err != nil {
				t.Fatalf("GET %s: %v in %q", target, err, r.body)
			}
			pages++
			if p.Group != "room:1" || p.Offset != 5 || p.Oldest != 1 || len(p.Epoch) != 16 || (epoch != "" && p.Epoch != epoch) {
				t.Errorf("GET %s: page %+v", target, p)
			}
			epoch = p.Epoch
			for _, m := range p.Messages {
				offsets = append(offsets, m.Offset)
				if want := fmt.Sprintf("[%d]", m.Offset); m.Target != "m" || string(m.Arguments) != want || m.Data != nil {
					t.Errorf("message %d: target %q arguments %s, want m %s", m.Offset, m.Target, m.Arguments, want)
				}
				if _, err := time.Parse(time.RFC3339Nano, m.Time); err != nil {
					t.Errorf("message %d: time %q: %v", m.Offset, m.Time, err)
				}
			}
			target = ""
			if p.NextLink != nil {
				u, err := url.Parse(*p.NextLink)
				if err != nil || u.Query().Get("epoch") != epoch || u.Query().Get("limit") != "2" {
					t.Fatalf("nextLink %q", *p.NextLink)
				}
				target = u.RequestURI()
			}
		}
		if !slices.Equal(offsets, []uint64{1, 2, 3, 4, 5}) || pages != 3 {
			t.Errorf("from %s: offsets %v in %d pages, want 1…5 in 3", start, offsets, pages)
		}
	}
}

// TestCatchUpMultiProtocol: a multi-protocol send is read back as its JSON payload's invocation,
// or, with no JSON payload, as its target and the body as sent.
func TestCatchUpMultiProtocol(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	variants := func(protocol string) []byte {
		p, _ := hubproto.Lookup(protocol)
		blob, err := p.AppendInvocation(nil, []byte(`{"type":1,"target":"t","arguments":["x",2]}`))
		if err != nil {
			t.Fatal(err)
		}
		b := msgp.AppendMapHeader(nil, 1)
		b = msgp.AppendString(b, protocol)
		return msgp.AppendBytes(b, blob)
	}
	withJSON, msgpackOnly := variants("json"), variants("messagepack")
	for _, body := range [][]byte{withJSON, msgpackOnly} {
		r := e.req(http.MethodPost, "/api/hubs/chat/groups/room:1/:send", string(body), "Content-Type", "application/octet-stream")
		if r.status != http.StatusAccepted {
			t.Fatalf("send: %d %q", r.status, r.body)
		}
	}
	r := e.req(http.MethodGet, "/api/hubs/chat/groups/room:1/messages", "")
	var p messagesPage
	if err := json.Unmarshal([]byte(r.body), &p); err != nil || len(p.Messages) != 2 {
		t.Fatalf("page %q: %v", r.body, err)
	}
	if m := p.Messages[0]; m.Target != "t" || string(m.Arguments) != `["x",2]` || m.Data != nil {
		t.Errorf("JSON payload read as target %q arguments %s data %v", m.Target, m.Arguments, m.Data)
	}
	if m := p.Messages[1]; m.Target != "t" || m.Arguments != nil || m.Data == nil || *m.Data != base64.StdEncoding.EncodeToString(msgpackOnly) {
		t.Errorf("MessagePack-only payload read as target %q arguments %s data %v", m.Target, m.Arguments, m.Data)
	}
}

// TestCatchUpErrors checks every refusal of the catch-up read, in both error formats.
func TestCatchUpErrors(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	for i := 1; i <= 4; i++ { // small:1 keeps the last 2: offsets 3 and 4
		if r := e.req(http.MethodPost, "/api/hubs/chat/groups/small:1/:send", args(i)); r.status != http.StatusAccepted {
			t.Fatalf("send %d: %d %q", i, r.status, r.body)
		}
	}
	epoch := e.req(http.MethodGet, "/api/hubs/chat/groups/small:1/messages?after=2", "")
	var p messagesPage
	if err := json.Unmarshal([]byte(epoch.body), &p); err != nil || len(p.Messages) != 2 || p.Oldest != 3 {
		t.Fatalf("after=2: %d %q", epoch.status, epoch.body)
	}
	tests := []struct {
		name, target string
		status       int
		code         string
		oldest       uint64 // in the ErrorDetail, 0 for none
	}{
		{"no history", "/api/hubs/chat/groups/plain/messages", 404, "Error.History.NotKept", 0},
		{"no history v1", "/api/v1/hubs/chat/groups/plain/messages", 404, "Error.History.NotKept", 0},
		{"offset gone", "/api/hubs/chat/groups/small:1/messages?after=1", 410, "Error.History.OffsetGone", 3},
		{"offset gone v1", "/api/v1/hubs/chat/groups/small:1/messages?after=0", 410, "Error.History.OffsetGone", 0},
		{"epoch changed", "/api/hubs/chat/groups/small:1/messages?after=3&epoch=0123456789abcdef", 410, "Error.History.EpochChanged", 3},
		{"offset ahead", "/api/hubs/chat/groups/small:1/messages?after=9", 400, "Error.History.OffsetAhead", 3},
		{"bad after", "/api/hubs/chat/groups/small:1/messages?after=-1", 400, "Error.BadRequest", 0},
		{"limit 0", "/api/hubs/chat/groups/small:1/messages?limit=0", 400, "Error.BadRequest", 0},
		{"limit too large", "/api/v1/hubs/chat/groups/small:1/messages?limit=1001", 400, "Error.BadRequest", 0},
		{"POST", "/api/hubs/chat/groups/small:1/messages", 405, "Error.MethodNotAllowed", 0},
	}
	for _, tt := range tests {
		method := http.MethodGet
		if tt.name == "POST" {
			method = http.MethodPost
		}
		r := e.req(method, tt.target, "")
		if r.status != tt.status || r.header.Get("x-ms-error-code") != tt.code {
			t.Errorf("%s: %d %s %q, want %d %s", tt.name, r.status, r.header.Get("x-ms-error-code"), r.body, tt.status, tt.code)
			continue
		}
		var d struct {
			Code   string
			Epoch  string
			Oldest uint64
		}
		err := json.Unmarshal([]byte(r.body), &d)
		if strings.HasPrefix(tt.target, "/api/v1/") {
			if err == nil || r.body == "" {
				t.Errorf("%s: v1 body %q, want plain text", tt.name, r.body)
			}
			continue
		}
		if err != nil || d.Code != tt.code || d.Oldest != tt.oldest || (tt.oldest != 0 && d.Epoch != p.Epoch) {
			t.Errorf("%s: body %q, want code %s oldest %d epoch %s", tt.name, r.body, tt.code, tt.oldest, p.Epoch)
		}
	}
}

// TestCatchUpWithoutHistory: a handler without History answers 404 NotKept, and sends with a
// key are plain sends when it has no idempotency index either.
func TestCatchUpWithoutHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if r := e.req(http.MethodGet, "/api/hubs/chat/groups/room:1/messages", ""); r.status != 404 || r.header.Get("x-ms-error-code") != "Error.History.NotKept" {
		t.Errorf("catch-up: %d %s", r.status, r.header.Get("x-ms-error-code"))
	}
	c := e.connect("chat", "u1")
	for range 2 {
		if r := e.req(http.MethodPost, "/api/hubs/chat/:send", args(1), "Idempotency-Key", "k"); r.status != 202 || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("send: %d replayed %q", r.status, r.header.Get("Idempotent-Replayed"))
		}
	}
	if got := c.received(); len(got) != 2 {
		t.Errorf("received %d messages, want 2 (no index: no idempotency)", len(got))
	}
}

// TestCatchUpAuth: the catch-up read needs a server token for its own path.
func TestCatchUpAuth(t *testing.T) {
	t.Parallel()
	e := newHistoryEnv(t)
	const target = "/api/hubs/chat/groups/room:1/messages"
	tests := []struct {
		name string
		auth string
	}{
		{"no token", "-"},
		{"token of another path", "Bearer " + e.token("/api/hubs/chat/groups/room:2/messages")},
		{"token of another key", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJl"},
	}
	for _, tt := range tests {
		if r := e.req(http.MethodGet, target, "", "Authorization", tt.auth); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %q, want 401", tt.name, r.status, r.body)
		}
	}
	if r := e.req(http.MethodGet, target, ""); r.status != http.StatusOK {
		t.Errorf("with a token: %d %q", r.status, r.body)
	}
}
