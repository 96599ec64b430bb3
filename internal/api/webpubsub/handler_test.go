package webpubsub

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

const testKey = "test-access-key-0123456789"

// testCodec encodes a message as "type|origin|group|data", so tests can see
// what core delivered.
type testCodec struct{}

func (testCodec) Key() int { return 15 }

func (testCodec) EncodeMessage(m *core.Message) core.Frame {
	origin := "server"
	if m.From == core.FromGroup {
		origin = "group"
	}
	return core.Frame{Data: []byte(m.Type.String() + "|" + origin + "|" + m.Group + "|" + string(m.Data)), Binary: m.Type == core.Binary}
}

func (testCodec) Sequenced() bool                                  { return false }
func (testCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }

func (testCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return core.Frame{Data: []byte("disconnected|" + reason)}, true
}

// testLink records what core asks of a socket.
type testLink struct {
	mu     sync.Mutex
	wakes  int
	closed []string // "code reason"
}

func (l *testLink) Wake() {
	l.mu.Lock()
	l.wakes++
	l.mu.Unlock()
}

func (l *testLink) Close(code int, reason string) {
	l.mu.Lock()
	l.closed = append(l.closed, strconv.Itoa(code)+" "+reason)
	l.mu.Unlock()
}

func (l *testLink) closes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.closed)
}

// env is a node behind the REST handler on a loopback server.
type env struct {
	t    *testing.T
	node *core.Node
	keys *auth.KeyRing
	reg  *prometheus.Registry
	srv  *httptest.Server
}

type envOptions struct {
	maxBody int64
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	node, err := core.NewNode(core.Config{NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewKeyRing(testKey)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Config{Node: node, Keys: keys, MaxBodyBytes: o.maxBody, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", h) // mounted as in production
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, node: node, keys: keys, reg: reg, srv: srv}
}

// connect opens a conn of hub for user, in groups.
func (e *env) connect(hub, user string, groups ...string) (*core.Conn, *testLink) {
	e.t.Helper()
	h, err := e.node.Hub(hub)
	if err != nil {
		e.t.Fatal(err)
	}
	l := &testLink{}
	c, err := h.Connect(core.ConnInfo{UserID: user, Codec: testCodec{}, Dialect: "test"}, l)
	if err != nil {
		e.t.Fatal(err)
	}
	linkOf.Store(c, l)
	for _, g := range groups {
		if err := h.JoinGroup(c, g); err != nil {
			e.t.Fatal(err)
		}
	}
	return c, l
}

type request struct {
	method, target string // target: path and query
	contentType    string
	body           string
	header         map[string]string
	token          string // "" mints a valid one; "-" sends none
}

type response struct {
	status int
	header http.Header
	body   string
}

func (e *env) token(fullURL string) string {
	e.t.Helper()
	tok, err := e.keys.MintServerToken(fullURL, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) do(rq request) response {
	e.t.Helper()
	u := rq.target
	if !strings.HasPrefix(u, "http") {
		u = e.srv.URL + u
	}
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if rq.contentType != "" {
		req.Header.Set("Content-Type", rq.contentType)
	}
	switch rq.token {
	case "":
		req.Header.Set("Authorization", "Bearer "+e.token(u))
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// linkOf maps each test conn to its link, which Drain needs.
var linkOf sync.Map

// queued returns the frames queued for c, as strings.
func queued(c *core.Conn) []string {
	var out []string
	l, _ := linkOf.Load(c)
	for _, it := range c.Drain(l.(core.Link), nil) {
		out = append(out, string(it.Body))
	}
	return out
}

// errBody is an error body in the service's field order.
func errBody(code, message, target string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return `{"code":` + q(code) + `,"message":` + q(message) + `,"target":` + q(target) + `,"details":null,"innererror":null}`
}

// fixture is the state every route case starts from, in hub "chat":
// c1 (alice, in g1), c2 (bob, in g1 and g2), c3 (anonymous, no group).
type fixture struct {
	c1, c2, c3 *core.Conn
	l1, l2, l3 *testLink
}

func (e *env) fixture() *fixture {
	f := &fixture{}
	f.c1, f.l1 = e.connect("chat", "alice", "g1")
	f.c2, f.l2 = e.connect("chat", "bob", "g1", "g2")
	f.c3, f.l3 = e.connect("chat", "")
	return f
}

func (f *fixture) expand(s string) string {
	return strings.NewReplacer("{c1}", f.c1.ID(), "{c2}", f.c2.ID(), "{c3}", f.c3.ID()).Replace(s)
}

const (
	ctJSON    = "application/json; charset=utf-8"
	groupMsg  = "Invalid group name. Valid group name should be in between 1 and 1024 characters long."
	noContent = ""
)

func TestRoutes(t *testing.T) {
	tests := []struct {
		name       string
		rq         request
		wantStatus int
		wantHeader map[string]string // "" value: header must be absent
		wantBody   *string           // nil: not checked
		check      func(t *testing.T, e *env, f *fixture)
	}{
		{
			name:       "health HEAD",
			rq:         request{method: "HEAD", target: "/api/health?api-version=2024-12-01", token: "-"},
			wantStatus: 200, wantBody: ptr(noContent),
		},
		{
			name:       "health GET",
			rq:         request{method: "GET", target: "/api/health", token: "-"},
			wantStatus: 200, wantBody: ptr(noContent),
		},
		{
			name:       "SendToAll text",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?api-version=2024-12-01", contentType: "text/plain", body: "hi"},
			wantStatus: 202, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) {
				for _, c := range []*core.Conn{f.c1, f.c2, f.c3} {
					wantQueued(t, c, "text|server||hi")
				}
			},
		},
		{
			name:       "SendToAll json compacted",
			rq:         request{method: "POST", target: "/api/hubs/Chat/:send", contentType: "application/json; charset=utf-8", body: "{ \"x\" : 1,\n \"y\": [1, 2] }"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1, `json|server||{"x":1,"y":[1,2]}`)
			},
		},
		{
			name:       "SendToAll binary without content type, excluded and filter",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?excluded={c1}&filter=" + url.QueryEscape("userId ne 'bob'") + "&messageTtlSeconds=60", body: "\x00\x01"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1)
				wantQueued(t, f.c2)
				wantQueued(t, f.c3, "binary|server||\x00\x01")
			},
		},
		{
			name:       "SendToAll repeated excluded",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?excluded={c1}&excluded={c3}", contentType: "application/octet-stream", body: "b"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1)
				wantQueued(t, f.c2, "binary|server||b")
				wantQueued(t, f.c3)
			},
		},
		{
			name:       "SendToAll empty body",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/plain"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1, "text|server||")
			},
		},
		{
			name:       "SendToAll invalid json",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send", contentType: "application/json", body: "{nope"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest", "Content-Type": ctJSON},
			check: func(t *testing.T, e *env, f *fixture) { wantQueued(t, f.c1) },
		},
		{
			name:       "SendToAll unsupported media type",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send", contentType: "image/png", body: "x"},
			wantStatus: 415, wantHeader: map[string]string{"x-ms-error-code": "Error.UnsupportedMediaType"},
		},
		{
			name:       "SendToAll ttl out of range",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?messageTtlSeconds=301", contentType: "text/plain", body: "x"},
			wantStatus: 400,
			wantBody:   ptr(errBody("Error.BadRequest", `Invalid messageTtlSeconds "301": it must be an integer between 0 and 300.`, "messageTtlSeconds")),
		},
		{
			name:       "SendToAll invalid hub",
			rq:         request{method: "POST", target: "/api/hubs/1chat/:send", contentType: "text/plain", body: "x"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest"},
		},
		{
			name:       "CloseAllConnections",
			rq:         request{method: "POST", target: "/api/hubs/chat/:closeConnections?excluded={c2}&reason=bye"},
			wantStatus: 204, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) {
				wantClosed(t, f.l1, "1000 bye")
				wantClosed(t, f.l2)
				wantClosed(t, f.l3, "1000 bye")
				wantQueued(t, f.c1, "disconnected|bye")
			},
		},
		{
			name:       "AddConnectionsToGroups by filter",
			rq:         request{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json", body: `{"groups":["x","y"],"filter":"userId eq 'alice'"}`},
			wantStatus: 200, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) {
				wantGroups(t, f.c1, "g1", "x", "y")
				wantGroups(t, f.c2, "g1", "g2")
			},
		},
		{
			name:       "AddConnectionsToGroups without filter takes all",
			rq:         request{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json", body: `{"groups":["x"]}`},
			wantStatus: 200,
			check: func(t *testing.T, e *env, f *fixture) {
				wantGroups(t, f.c3, "x")
				wantGroups(t, f.c2, "g1", "g2", "x")
			},
		},
		{
			name:       "AddConnectionsToGroups empty groups",
			rq:         request{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json", body: `{"groups":[]}`},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest"},
		},
		{
			name:       "AddConnectionsToGroups invalid group",
			rq:         request{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json", body: `{"groups":["  "]}`},
			wantStatus: 400, wantBody: ptr(errBody("Error.BadRequest", groupMsg, "groups")),
		},
		{
			name:       "RemoveConnectionsFromGroups",
			rq:         request{method: "POST", target: "/api/hubs/chat/:removeFromGroups", contentType: "application/json", body: `{"groups":["g1"],"filter":"'g2' in groups"}`},
			wantStatus: 200, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) {
				wantGroups(t, f.c1, "g1")
				wantGroups(t, f.c2, "g2")
			},
		},
		{
			name:       "CloseConnection",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/connections/{c1}?reason=kick"},
			wantStatus: 204,
			check: func(t *testing.T, e *env, f *fixture) {
				wantClosed(t, f.l1, "1000 kick")
				wantClosed(t, f.l2)
			},
		},
		{
			name:       "CloseConnection unknown",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/connections/xxx"},
			wantStatus: 204,
		},
		{
			name:       "ConnectionExists",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/connections/{c1}"},
			wantStatus: 200, wantBody: ptr(noContent),
		},
		{
			name:       "ConnectionExists missing",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/connections/xxx"},
			wantStatus: 404, wantBody: ptr(noContent),
			wantHeader: map[string]string{"x-ms-error-code": "Warning.Connection.NotExisted"},
		},
		{
			name:       "SendToConnection",
			rq:         request{method: "POST", target: "/api/hubs/chat/connections/{c2}/:send", contentType: "text/plain", body: "to you"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1)
				wantQueued(t, f.c2, "text|server||to you")
			},
		},
		{
			name:       "SendToConnection unknown",
			rq:         request{method: "POST", target: "/api/hubs/chat/connections/xxxx/:send", contentType: "text/plain", body: "hello"},
			wantStatus: 202,
		},
		{
			name:       "RemoveConnectionFromAllGroups",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/connections/{c2}/groups"},
			wantStatus: 204,
			check:      func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c2) },
		},
		{
			name:       "RemoveConnectionFromAllGroups unknown",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/connections/xxx/groups"},
			wantStatus: 204,
		},
		{
			name:       "GroupExists",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/groups/g2"},
			wantStatus: 200,
		},
		{
			name:       "GroupExists missing",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/groups/nope"},
			wantStatus: 404, wantBody: ptr(noContent),
			wantHeader: map[string]string{"x-ms-error-code": "Warning.Group.NotExisted"},
		},
		{
			name:       "CloseGroupConnections",
			rq:         request{method: "POST", target: "/api/hubs/chat/groups/g1/:closeConnections?excluded={c1}&reason=r"},
			wantStatus: 204,
			check: func(t *testing.T, e *env, f *fixture) {
				wantClosed(t, f.l1)
				wantClosed(t, f.l2, "1000 r")
				wantClosed(t, f.l3)
			},
		},
		{
			name:       "SendToGroup",
			rq:         request{method: "POST", target: "/api/hubs/chat/groups/g1/:send?excluded={c2}", contentType: "application/json", body: `"s"`},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1, `json|group|g1|"s"`)
				wantQueued(t, f.c2)
				wantQueued(t, f.c3)
			},
		},
		{
			name:       "SendToGroup invalid group",
			rq:         request{method: "POST", target: "/api/hubs/chat/groups/%20/:send", contentType: "text/plain", body: "x"},
			wantStatus: 400, wantBody: ptr(errBody("Error.BadRequest", groupMsg, "group")),
		},
		{
			name:       "ListConnectionsInGroup missing group",
			rq:         request{method: "GET", target: "/api/hubs/chat/groups/none/connections?api-version=2024-12-01"},
			wantStatus: 200, wantBody: ptr(`{"value":[]}`),
			wantHeader: map[string]string{"Content-Type": ctJSON},
		},
		{
			name:       "ListConnectionsInGroup bad continuation token",
			rq:         request{method: "GET", target: "/api/hubs/chat/groups/g1/connections?continuationToken=!!!"},
			wantStatus: 400, wantBody: ptr(errBody("Error.BadRequest", "Invalid continuationToken.", "continuationToken")),
		},
		{
			name:       "ListConnectionsInGroup bad maxpagesize",
			rq:         request{method: "GET", target: "/api/hubs/chat/groups/g1/connections?maxpagesize=201"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest"},
		},
		{
			name:       "AddConnectionToGroup",
			rq:         request{method: "PUT", target: "/api/hubs/chat/groups/new/connections/{c3}"},
			wantStatus: 200, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c3, "new") },
		},
		{
			name:       "AddConnectionToGroup unknown connection",
			rq:         request{method: "PUT", target: "/api/hubs/chat/groups/g/connections/xxx"},
			wantStatus: 404,
			wantHeader: map[string]string{"x-ms-error-code": "Error.Connection.NotExisted", "Content-Type": ctJSON},
			wantBody:   ptr("{\"code\":\"Error.Connection.NotExisted\",\"message\":\"Connection `xxx` is not found.\",\"target\":\"Connection\",\"details\":null,\"innererror\":null}"),
		},
		{
			name:       "RemoveConnectionFromGroup",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/groups/g2/connections/{c2}"},
			wantStatus: 204,
			check:      func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c2, "g1") },
		},
		{
			name:       "RemoveConnectionFromGroup unknown",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/groups/g2/connections/xxx"},
			wantStatus: 204,
		},
		{
			name:       "GrantPermission",
			rq:         request{method: "PUT", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/{c1}?targetName=x"},
			wantStatus: 200, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) {
				if !f.c1.Can(core.PermJoinLeave, "x") || f.c1.Can(core.PermJoinLeave, "y") {
					t.Error("grant of joinLeaveGroup on x not applied exactly")
				}
			},
		},
		{
			name:       "GrantPermission all groups",
			rq:         request{method: "PUT", target: "/api/hubs/chat/permissions/sendToGroup/connections/{c1}"},
			wantStatus: 200,
			check: func(t *testing.T, e *env, f *fixture) {
				if !f.c1.Can(core.PermSend, "") || !f.c1.Can(core.PermSend, "any") {
					t.Error("grant of sendToGroup on every group not applied")
				}
			},
		},
		{
			name:       "GrantPermission unknown connection",
			rq:         request{method: "PUT", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/xxx?targetName=x"},
			wantStatus: 404,
			wantHeader: map[string]string{"x-ms-error-code": "Info.Connection.NotExisted", "Content-Type": ctJSON},
			wantBody:   ptr("{\"code\":\"Info.Connection.NotExisted\",\"message\":\"Connection `xxx` is not found.\",\"target\":\"Connection\",\"details\":null,\"innererror\":null}"),
		},
		{
			name:       "GrantPermission invalid permission",
			rq:         request{method: "PUT", target: "/api/hubs/chat/permissions/fly/connections/{c1}"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest"},
		},
		{
			name: "RevokePermission",
			rq:   request{method: "DELETE", target: "/api/hubs/chat/permissions/sendToGroup/connections/{c1}?targetName=x"},
			check: func(t *testing.T, e *env, f *fixture) {
				if f.c1.Can(core.PermSend, "x") {
					t.Error("revoked permission still held")
				}
			},
			wantStatus: 204, wantBody: ptr(noContent),
		},
		{
			name:       "RevokePermission unknown connection",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/invalid-id?targetName=x"},
			wantStatus: 204,
		},
		{
			name:       "RevokePermission without targetName",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/xxxx"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest", "Content-Type": ctJSON},
			wantBody: ptr(errBody("Error.BadRequest", groupMsg, "targetName")),
		},
		{
			name:       "RevokePermission sendToGroup without targetName",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/permissions/sendToGroup/connections/{c1}"},
			wantStatus: 400, wantBody: ptr(errBody("Error.BadRequest", groupMsg, "targetName")),
		},
		{
			name:       "CheckPermission not granted",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/{c1}?targetName=x"},
			wantStatus: 404, wantBody: ptr(noContent),
		},
		{
			name:       "CheckPermission unknown connection",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/permissions/joinLeaveGroup/connections/xxxx?targetName=x"},
			wantStatus: 404, wantBody: ptr(noContent),
			wantHeader: map[string]string{"x-ms-error-code": "Warning.Connection.NotExisted"},
		},
		{
			name:       "CheckPermission invalid permission",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/permissions/nope/connections/{c1}"},
			wantStatus: 400, wantBody: ptr(noContent),
		},
		{
			name:       "UserExists",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/users/alice"},
			wantStatus: 200,
		},
		{
			name:       "UserExists is case-sensitive",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/users/Alice"},
			wantStatus: 404, wantHeader: map[string]string{"x-ms-error-code": "Warning.User.NotExisted"},
		},
		{
			name:       "CloseUserConnections",
			rq:         request{method: "POST", target: "/api/hubs/chat/users/bob/:closeConnections?reason=x"},
			wantStatus: 204,
			check: func(t *testing.T, e *env, f *fixture) {
				wantClosed(t, f.l2, "1000 x")
				wantClosed(t, f.l1)
			},
		},
		{
			name:       "CloseUserConnections unknown user",
			rq:         request{method: "POST", target: "/api/hubs/chat/users/xxxx/:closeConnections"},
			wantStatus: 204,
		},
		{
			name:       "SendToUser",
			rq:         request{method: "POST", target: "/api/hubs/chat/users/alice/:send", contentType: "text/plain", body: "yo"},
			wantStatus: 202,
			check: func(t *testing.T, e *env, f *fixture) {
				wantQueued(t, f.c1, "text|server||yo")
				wantQueued(t, f.c2)
			},
		},
		{
			name:       "RemoveUserFromAllGroups",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/users/bob/groups"},
			wantStatus: 204,
			check:      func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c2) },
		},
		{
			name:       "RemoveUserFromGroup",
			rq:         request{method: "DELETE", target: "/api/hubs/chat/users/bob/groups/g1"},
			wantStatus: 204,
			check:      func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c2, "g2") },
		},
		{
			name:       "AddUserToGroup",
			rq:         request{method: "PUT", target: "/api/hubs/chat/users/alice/groups/g9"},
			wantStatus: 200, wantBody: ptr(noContent),
			check: func(t *testing.T, e *env, f *fixture) { wantGroups(t, f.c1, "g1", "g9") },
		},
		{
			name:       "AddUserToGroup without connections",
			rq:         request{method: "PUT", target: "/api/hubs/chat/users/nobody/groups/g9"},
			wantStatus: 404,
			wantHeader: map[string]string{"x-ms-error-code": "Error.User.NotExisted"},
			wantBody:   ptr(errBody("Error.User.NotExisted", "User `nobody` is not found.", "User")),
		},
		{
			name:       "unknown path",
			rq:         request{method: "GET", target: "/api/nothing/here"},
			wantStatus: 404, wantHeader: map[string]string{"x-ms-error-code": "Error.NotFound", "Content-Type": ctJSON},
		},
		{
			name:       "wrong method",
			rq:         request{method: "GET", target: "/api/hubs/chat/:send"},
			wantStatus: 405, wantHeader: map[string]string{"Allow": "POST", "x-ms-error-code": "Error.MethodNotAllowed"},
		},
		{
			name:       "wrong method lists every allowed one",
			rq:         request{method: "POST", target: "/api/hubs/chat/permissions/sendToGroup/connections/c"},
			wantStatus: 405, wantHeader: map[string]string{"Allow": "DELETE, HEAD, PUT"},
		},
		{
			name:       "trailing slash",
			rq:         request{method: "HEAD", target: "/api/hubs/chat/users/alice/"},
			wantStatus: 200,
		},
		{
			name:       "excluded values are whole ids",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?excluded={c1},{c2}", contentType: "text/plain", body: "x"},
			wantStatus: 202,
			check:      func(t *testing.T, e *env, f *fixture) { wantQueued(t, f.c1, "text|server||x") },
		},
		{
			name:       "malformed query",
			rq:         request{method: "POST", target: "/api/hubs/chat/:send?filter=100%zz", contentType: "text/plain", body: "x"},
			wantStatus: 400, wantHeader: map[string]string{"x-ms-error-code": "Error.BadRequest"},
			check: func(t *testing.T, e *env, f *fixture) { wantQueued(t, f.c1) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			f := e.fixture()
			rq := tt.rq
			rq.target = f.expand(rq.target)
			res := e.do(rq)
			if res.status != tt.wantStatus {
				t.Fatalf("%s %s: status %d, want %d; body %s", rq.method, rq.target, res.status, tt.wantStatus, res.body)
			}
			if got := res.header.Get("api-supported-versions"); got != supportedVersions {
				t.Errorf("api-supported-versions = %q", got)
			}
			for k, v := range tt.wantHeader {
				if got := res.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.wantBody != nil && res.body != *tt.wantBody {
				t.Errorf("body\n got %s\nwant %s", res.body, *tt.wantBody)
			}
			if res.status >= 400 && rq.method != "HEAD" && res.body == "" {
				t.Errorf("error answer without body")
			}
			if tt.check != nil {
				tt.check(t, e, f)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func wantQueued(t *testing.T, c *core.Conn, want ...string) {
	t.Helper()
	if got := queued(c); !slices.Equal(got, want) {
		t.Errorf("conn %s got %q, want %q", c.ID(), got, want)
	}
}

func wantClosed(t *testing.T, l *testLink, want ...string) {
	t.Helper()
	if got := l.closes(); !slices.Equal(got, want) {
		t.Errorf("closes %q, want %q", got, want)
	}
}

func wantGroups(t *testing.T, c *core.Conn, want ...string) {
	t.Helper()
	got := c.Groups()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("conn %s in groups %q, want %q", c.ID(), got, want)
	}
}

// The invalid-filter answer of spec Appendix A, for every operation that
// takes a filter.
func TestBadFilterProblem(t *testing.T) {
	const msg = "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'. (Parameter 'filter')"
	want := `{"code":"Error.BadRequest","message":"` + msg + `","target":"filter","errors":{"filter":["` + msg + `"]},` +
		`"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"One or more validation errors occurred.",` +
		`"status":400,"detail":null,"instance":null,"extensions":{}}`
	q := "?filter=" + url.QueryEscape("invalid filter")
	body := `{"groups":["g"],"filter":"invalid filter"}`
	for _, rq := range []request{
		{method: "POST", target: "/api/hubs/chat/:send" + q, contentType: "text/plain", body: "hello"},
		{method: "POST", target: "/api/hubs/chat/groups/g/:send" + q, contentType: "text/plain", body: "hello"},
		{method: "POST", target: "/api/hubs/chat/users/brian/:send" + q, contentType: "text/plain", body: "hello"},
		{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json", body: body},
		{method: "POST", target: "/api/hubs/chat/:removeFromGroups", contentType: "application/json", body: body},
	} {
		e := newEnv(t, envOptions{})
		res := e.do(rq)
		if res.status != 400 {
			t.Fatalf("%s: status %d", rq.target, res.status)
		}
		if ct := res.header.Get("Content-Type"); ct != "application/problem+json; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", rq.target, ct)
		}
		if c := res.header.Get("x-ms-error-code"); c != "Error.BadRequest" {
			t.Errorf("%s: x-ms-error-code %q", rq.target, c)
		}
		if res.body != want {
			t.Errorf("%s: body\n got %s\nwant %s", rq.target, res.body, want)
		}
		var parsed struct{ Message string }
		if err := json.Unmarshal([]byte(res.body), &parsed); err != nil || parsed.Message != msg {
			t.Errorf("%s: message %q (%v)", rq.target, parsed.Message, err)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	target := "/api/hubs/chat/:send?api-version=2024-12-01"
	full := e.srv.URL + target
	other, err := auth.NewKeyRing("some-other-key")
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := other.MintServerToken(full, time.Hour)
	expired, _ := e.keys.MintClientToken(full, auth.MintOptions{Now: time.Now().Add(-2 * time.Hour), TTL: time.Minute})
	wrongPath := e.token(e.srv.URL + "/api/hubs/other/:send")
	tests := []struct {
		name   string
		header string // Authorization
		want   int
		reason string
	}{
		{"valid", "Bearer " + e.token(full), 202, ""},
		{"token without query", "Bearer " + e.token(e.srv.URL+"/api/hubs/chat/:send"), 202, ""},
		{"token for another host", "Bearer " + e.token("https://public.example.com/api/hubs/chat/:send"), 202, ""},
		{"no token", "", 401, "missing bearer token"},
		{"not bearer", "Basic dXNlcjpwYXNz", 401, "token malformed"},
		{"garbage", "Bearer abc.def.ghi", 401, "token malformed"},
		{"wrong key", "Bearer " + wrongKey, 401, "token signature invalid"},
		{"expired", "Bearer " + expired, 401, "token expired or not yet valid"},
		{"wrong path", "Bearer " + wrongPath, 401, "token audience does not match the request path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", full, strings.NewReader("x"))
			req.Header.Set("Content-Type", "text/plain")
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.want, b)
			}
			if tt.want != 401 {
				return
			}
			if got := res.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if got := strings.TrimSpace(string(b)); got != tt.reason {
				t.Errorf("body %q, want %q", got, tt.reason)
			}
			if got := res.Header.Get("api-supported-versions"); got != supportedVersions {
				t.Errorf("api-supported-versions = %q", got)
			}
		})
	}
	// HEAD answers 401 without a body; health needs no token.
	if res := e.do(request{method: "HEAD", target: "/api/hubs/chat/users/u", token: "-"}); res.status != 401 || res.body != "" {
		t.Errorf("HEAD without token: %d %q", res.status, res.body)
	}
}

func TestSecondaryKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	// A handler whose secondary key is testKey accepts tokens signed with it.
	node, _ := core.NewNode(core.Config{})
	ring, _ := auth.NewKeyRing("new-primary-key", testKey)
	h, err := NewHandler(Config{Node: node, Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	tok := e.token(srv.URL + "/api/hubs/chat/users/u") // signed with testKey, the secondary
	req, _ := http.NewRequest("HEAD", srv.URL+"/api/hubs/chat/users/u", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("status %d, want 404 (authenticated, user missing)", res.StatusCode)
	}
}

func TestBodyLimits(t *testing.T) {
	e := newEnv(t, envOptions{maxBody: 1024})
	c, _ := e.connect("chat", "u")
	big := strings.Repeat("a", 2000)
	res := e.do(request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/plain", body: big})
	if res.status != 413 || res.header.Get("x-ms-error-code") != "Error.PayloadTooLarge" {
		t.Fatalf("over-limit body: %d %s", res.status, res.body)
	}
	want := errBody("Error.PayloadTooLarge", "The request body is larger than the limit of 1024 bytes.", "body")
	if res.body != want {
		t.Errorf("body %s, want %s", res.body, want)
	}

	// Chunked: no Content-Length, so the limit trips while reading.
	send := func(body io.Reader) int {
		u := e.srv.URL + "/api/hubs/chat/:send"
		req, _ := http.NewRequest("POST", u, body)
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Authorization", "Bearer "+e.token(u))
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if got := send(io.MultiReader(strings.NewReader(big))); got != 413 {
		t.Errorf("chunked over-limit body: %d", got)
	}
	if got := send(io.MultiReader(strings.NewReader("chunked ok"))); got != 202 {
		t.Errorf("chunked body: %d", got)
	}
	wantQueued(t, c, "text|server||chunked ok")
	// Exactly at the limit is fine.
	if res := e.do(request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/plain", body: big[:1024]}); res.status != 202 {
		t.Errorf("body at the limit: %d", res.status)
	}
}

func TestMediaTypes(t *testing.T) {
	tests := []struct {
		ct     string
		body   string
		status int
		want   string
	}{
		{"text/plain", "t", 202, "text|server||t"},
		{"Text/Plain; charset=UTF-8", "t", 202, "text|server||t"},
		{"application/json", `[1, 2]`, 202, "json|server||[1,2]"},
		{"application/json;charset=utf-8", `"str"`, 202, `json|server||"str"`},
		{"application/json", "", 202, "text|server||"},
		{"application/json", "1 2", 400, ""},
		{"application/json", "\"\xff\"", 400, ""},
		{"text/plain", "\xff", 400, ""},
		{"application/octet-stream", "\xff", 202, "binary|server||\xff"},
		{"", "raw", 202, "binary|server||raw"},
		{"application/xml", "<a/>", 415, ""},
		{"text/json", "{}", 415, ""},
		{"not a type", "x", 415, ""},
	}
	for _, tt := range tests {
		e := newEnv(t, envOptions{})
		c, _ := e.connect("chat", "u")
		res := e.do(request{method: "POST", target: "/api/hubs/chat/:send", contentType: tt.ct, body: tt.body})
		if res.status != tt.status {
			t.Errorf("%q %q: status %d, want %d (%s)", tt.ct, tt.body, res.status, tt.status, res.body)
			continue
		}
		if tt.want == "" {
			wantQueued(t, c)
		} else {
			wantQueued(t, c, tt.want)
		}
	}
}

func TestListConnectionsInGroupPaging(t *testing.T) {
	e := newEnv(t, envOptions{})
	var ids []string
	for i := range 6 {
		user := ""
		if i%2 == 0 {
			user = "user" + strconv.Itoa(i)
		}
		c, _ := e.connect("chat", user, "room")
		ids = append(ids, c.ID())
	}
	e.connect("chat", "outsider", "other")
	slices.Sort(ids)

	type page struct {
		Value []struct {
			ConnectionID string  `json:"connectionId"`
			UserID       *string `json:"userId"`
		} `json:"value"`
		NextLink *string `json:"nextLink"`
	}
	list := func(query string) (pages int, got []string) {
		t.Helper()
		next := "/api/hubs/chat/groups/room/connections?api-version=2024-12-01" + query
		for next != "" {
			res := e.do(request{method: "GET", target: next})
			if res.status != 200 {
				t.Fatalf("GET %s: %d %s", next, res.status, res.body)
			}
			var p page
			if err := json.Unmarshal([]byte(res.body), &p); err != nil {
				t.Fatal(err)
			}
			pages++
			for _, v := range p.Value {
				got = append(got, v.ConnectionID)
			}
			next = ""
			if p.NextLink != nil {
				next = *p.NextLink
				if !strings.HasPrefix(next, e.srv.URL+"/api/hubs/chat/groups/room/connections?api-version=2024-12-01&") {
					t.Fatalf("nextLink %q is not absolute or lacks api-version", next)
				}
			}
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		return pages, got
	}
	tests := []struct {
		query        string
		pages, total int
	}{
		{"", 1, 6},
		{"&top=6", 1, 6},
		{"&top=3", 1, 3},
		{"&maxpagesize=2", 3, 6},
		{"&top=5&maxpagesize=2", 3, 5},
		{"&maxpagesize=4", 2, 6},
		{"&top=100&maxpagesize=1", 6, 6},
	}
	for _, tt := range tests {
		pages, got := list(tt.query)
		if pages != tt.pages || len(got) != tt.total {
			t.Errorf("%s: %d pages, %d conns; want %d, %d", tt.query, pages, len(got), tt.pages, tt.total)
		}
		if !slices.Equal(got, ids[:len(got)]) {
			t.Errorf("%s: conns %q not the first of %q in order", tt.query, got, ids)
		}
	}

	// The first page's nextLink carries maxpagesize, the remaining top and
	// a base64url continuation token; userId is null for anonymous conns.
	res := e.do(request{method: "GET", target: "/api/hubs/chat/groups/room/connections?top=5&maxpagesize=2"})
	var p page
	json.Unmarshal([]byte(res.body), &p)
	if p.NextLink == nil {
		t.Fatal("no nextLink")
	}
	u, err := url.Parse(*p.NextLink)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	tok, _ := base64.RawURLEncoding.DecodeString(q.Get("continuationToken"))
	if q.Get("api-version") != "2024-12-01" || q.Get("maxpagesize") != "2" || q.Get("top") != "3" || string(tok) != ids[1] {
		t.Errorf("nextLink query %v", q)
	}
	res = e.do(request{method: "GET", target: "/api/hubs/chat/groups/room/connections"})
	if !strings.Contains(res.body, `"userId":null`) || !strings.Contains(res.body, `"userId":"user`) || strings.Contains(res.body, "nextLink") {
		t.Errorf("full listing: %s", res.body)
	}

	// Forwarded scheme and host shape nextLink.
	res = e.do(request{method: "GET", target: "/api/hubs/chat/groups/room/connections?maxpagesize=1",
		header: map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "wps.example.com, proxy"}})
	json.Unmarshal([]byte(res.body), &p)
	if p.NextLink == nil || !strings.HasPrefix(*p.NextLink, "https://wps.example.com/api/hubs/chat/groups/room/connections?api-version=2024-12-01&maxpagesize=1&continuationToken=") {
		t.Errorf("forwarded nextLink %v", p.NextLink)
	}
}

func TestGenerateToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		query    string
		status   int
		aud      string // path after the server URL
		user     string
		roles    []string
		groups   []string
		lifetime time.Duration
	}{
		{"", 200, "/client/hubs/Chat", "", nil, nil, time.Hour},
		{"?userId=brian&role=webpubsub.joinLeaveGroup&role=webpubsub.sendToGroup.g1&group=g1&group=g2&minutesToExpire=5",
			200, "/client/hubs/Chat", "brian", []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.g1"}, []string{"g1", "g2"}, 5 * time.Minute},
		{"?clientType=MQTT", 200, "/clients/mqtt/hubs/Chat", "", nil, nil, time.Hour},
		{"?clientType=socketio", 200, "/clients/socketio/hubs/Chat", "", nil, nil, time.Hour},
		{"?clientType=default&userId=u", 200, "/client/hubs/Chat", "u", nil, nil, time.Hour},
		{"?clientType=carrier-pigeon", 400, "", "", nil, nil, 0},
		{"?minutesToExpire=0", 400, "", "", nil, nil, 0},
		{"?minutesToExpire=abc", 400, "", "", nil, nil, 0},
		{"?group=%20", 400, "", "", nil, nil, 0},
	}
	for _, tt := range tests {
		res := e.do(request{method: "POST", target: "/api/hubs/Chat/:generateToken" + tt.query})
		if res.status != tt.status {
			t.Errorf("%s: status %d, want %d (%s)", tt.query, res.status, tt.status, res.body)
			continue
		}
		if tt.status != 200 {
			continue
		}
		if ct := res.header.Get("Content-Type"); ct != ctJSON {
			t.Errorf("%s: Content-Type %q", tt.query, ct)
		}
		var body struct{ Token string }
		if err := json.Unmarshal([]byte(res.body), &body); err != nil || body.Token == "" {
			t.Fatalf("%s: body %s", tt.query, res.body)
		}
		claims, err := e.keys.VerifyClientToken(body.Token, tt.aud, time.Now())
		if err != nil {
			t.Errorf("%s: token does not verify for %s: %v", tt.query, tt.aud, err)
			continue
		}
		if claims.UserID != tt.user || !slices.Equal(claims.Roles, tt.roles) || !slices.Equal(claims.Groups, tt.groups) {
			t.Errorf("%s: claims %+v", tt.query, claims)
		}
		if d := time.Until(claims.Expires); d > tt.lifetime || d < tt.lifetime-time.Minute {
			t.Errorf("%s: expires in %v, want about %v", tt.query, d, tt.lifetime)
		}
		var raw map[string]any
		seg := strings.Split(body.Token, ".")[1]
		b, _ := base64.RawURLEncoding.DecodeString(seg)
		json.Unmarshal(b, &raw)
		if raw["aud"] != e.srv.URL+tt.aud {
			t.Errorf("%s: aud %v, want %s", tt.query, raw["aud"], e.srv.URL+tt.aud)
		}
	}
}

// Escaped path segments: user ids and groups may hold '/', '?' or '%'.
func TestEscapedSegments(t *testing.T) {
	e := newEnv(t, envOptions{})
	c, _ := e.connect("chat", "a/b?c%d", "g/1")
	for _, rq := range []request{
		{method: "HEAD", target: "/api/hubs/chat/users/a%2Fb%3Fc%25d"},
		{method: "HEAD", target: "/api/hubs/chat/groups/g%2F1"},
		{method: "PUT", target: "/api/hubs/chat/users/a%2Fb%3Fc%25d/groups/x%2F..%2Fy"},
	} {
		if res := e.do(rq); res.status != 200 {
			t.Errorf("%s %s: %d %s", rq.method, rq.target, res.status, res.body)
		}
	}
	wantGroups(t, c, "g/1", "x/../y")
	res := e.do(request{method: "POST", target: "/api/hubs/chat/users/a%2Fb%3Fc%25d/:send", contentType: "text/plain", body: "m"})
	if res.status != 202 {
		t.Fatalf("send: %d", res.status)
	}
	wantQueued(t, c, "text|server||m")
	// The literal action segments are matched ignoring case, as .NET routing does.
	if res := e.do(request{method: "POST", target: "/api/hubs/chat/:SEND", contentType: "text/plain", body: "m"}); res.status != 202 {
		t.Errorf(":SEND: %d", res.status)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.do(request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/plain", body: "x"})
	e.do(request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/plain", body: "x"})
	e.do(request{method: "HEAD", target: "/api/hubs/chat/users/u"})
	e.do(request{method: "GET", target: "/api/zzz"})
	e.do(request{method: "POST", target: "/api/hubs/chat/:send", token: "-"})
	for _, tt := range []struct {
		op, status string
		want       float64
	}{
		{opSendToAll, "202", 2},
		{opUserExists, "404", 1},
		{opUnknown, "404", 1},
		{opSendToAll, "401", 1},
	} {
		got := metrictest.Value(t, e.reg, "switchboard_rest_requests_total", "operation", tt.op, "status", tt.status)
		if got != tt.want {
			t.Errorf("requests_total{%s,%s} = %v, want %v", tt.op, tt.status, got, tt.want)
		}
	}
	n, err := testutil.GatherAndCount(e.reg, "switchboard_rest_request_duration_seconds")
	if err != nil || n != 3 {
		t.Errorf("duration series: %d (%v), want 3", n, err)
	}
	// A second handler on the same registry shares the metrics.
	if _, err := NewHandler(Config{Node: e.node, Keys: e.keys, Registerer: e.reg}); err != nil {
		t.Errorf("second handler on one registry: %v", err)
	}
}

func TestNewHandlerConfig(t *testing.T) {
	node, _ := core.NewNode(core.Config{})
	keys, _ := auth.NewKeyRing(testKey)
	for _, cfg := range []Config{
		{Keys: keys},
		{Node: node},
		{Node: node, Keys: keys, MaxBodyBytes: -1},
	} {
		if _, err := NewHandler(cfg); err == nil {
			t.Errorf("NewHandler(%+v) succeeded", cfg)
		}
	}
}
