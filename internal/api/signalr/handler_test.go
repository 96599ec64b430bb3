package signalr_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cristalhq/jwt/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/api/webpubsub"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/tinylib/msgp/msgp"
)

const invocation = `{"target":"newMessage","arguments":["hi",1]}`

// fixture: hub chat with conn "{c}" of user u1 in group g1.
func fixture(t *testing.T) (*env, client) {
	e := newEnv(t, envOptions{})
	c := e.connect("chat", "u1")
	if err := e.hub("chat").JoinGroup(c.Conn, "g1"); err != nil {
		t.Fatal(err)
	}
	return e, c
}

// TestStatusCodes checks the success and not-found answers of every operation under both
// path generations (spec §7.3).
func TestStatusCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, target, body string
		want                 int
		code                 string // x-ms-error-code, "" for none
	}{
		// Sends: always 202, whether anybody receives or not.
		{"POST", "/api/v1/hubs/chat", invocation, 202, ""},
		{"POST", "/api/hubs/chat/:send?api-version=2022-06-01", invocation, 202, ""},
		{"POST", "/api/hubs/chat", invocation, 202, ""},
		{"POST", "/api/hubs/empty/:send", invocation, 202, ""},
		{"POST", "/api/v1/hubs/chat/users/u1", invocation, 202, ""},
		{"POST", "/api/hubs/chat/users/nobody/:send", invocation, 202, ""},
		{"POST", "/api/v1/hubs/chat/connections/{c}", invocation, 202, ""},
		{"POST", "/api/hubs/chat/connections/{c}/:send", invocation, 202, ""},
		{"POST", "/api/hubs/chat/connections/unknown/:send", invocation, 202, ""},
		{"POST", "/api/v1/hubs/chat/groups/g1", invocation, 202, ""},
		{"POST", "/api/hubs/chat/groups/nobody/:send", invocation, 202, ""},

		// Existence checks, GET and HEAD, both generations.
		{"HEAD", "/api/hubs/chat/connections/{c}", "", 200, ""},
		{"GET", "/api/v1/hubs/chat/connections/{c}", "", 200, ""},
		{"HEAD", "/api/hubs/chat/connections/unknown", "", 404, "Warning.Connection.NotExisted"},
		{"GET", "/api/v1/hubs/chat/connections/unknown", "", 404, "Warning.Connection.NotExisted"},
		{"HEAD", "/api/hubs/chat/users/u1", "", 200, ""},
		{"GET", "/api/v1/hubs/chat/users/u1", "", 200, ""},
		{"HEAD", "/api/hubs/chat/users/nobody", "", 404, "Warning.User.NotExisted"},
		{"GET", "/api/v1/hubs/chat/users/nobody", "", 404, "Warning.User.NotExisted"},
		{"HEAD", "/api/hubs/chat/groups/g1", "", 200, ""},
		{"GET", "/api/v1/hubs/chat/groups/g1", "", 200, ""},
		{"HEAD", "/api/hubs/chat/groups/none", "", 404, "Warning.Group.NotExisted"},
		{"GET", "/api/hubs/chat/groups/none", "", 404, "Warning.Group.NotExisted"},
		{"HEAD", "/api/hubs/chat/users/u1/groups/g1", "", 200, ""},
		{"GET", "/api/hubs/chat/users/u1/groups/g1", "", 200, ""},
		{"GET", "/api/v1/hubs/chat/groups/g1/users/u1", "", 200, ""},
		{"HEAD", "/api/hubs/chat/groups/g2/users/u1", "", 404, "Info.User.NotInGroup"},
		{"GET", "/api/v1/hubs/chat/users/u1/groups/g2", "", 404, "Info.User.NotInGroup"},

		// Connection membership: 200, both path orders; unknown conn on add only.
		{"PUT", "/api/v1/hubs/chat/groups/g2/connections/{c}", "", 200, ""},
		{"PUT", "/api/hubs/chat/connections/{c}/groups/g2", "", 200, ""},
		{"PUT", "/api/hubs/chat/groups/g2/connections/unknown", "", 404, "Error.Connection.NotExisted"},
		{"DELETE", "/api/hubs/chat/groups/g1/connections/{c}", "", 200, ""},
		{"DELETE", "/api/v1/hubs/chat/connections/{c}/groups/g1", "", 200, ""},
		{"DELETE", "/api/hubs/chat/groups/not-a-member/connections/{c}", "", 200, ""},
		{"DELETE", "/api/hubs/chat/groups/g1/connections/unknown", "", 200, ""},
		{"DELETE", "/api/hubs/chat/connections/{c}/groups", "", 200, ""},
		{"DELETE", "/api/hubs/chat/connections/unknown/groups", "", 200, ""},

		// User membership: v1 202; 2022 200 (add) and 204 (remove).
		{"PUT", "/api/v1/hubs/chat/groups/g2/users/u1", "", 202, ""},
		{"PUT", "/api/hubs/chat/users/u1/groups/g2?ttl=60", "", 200, ""},
		{"PUT", "/api/hubs/chat/groups/g2/users/nobody", "", 200, ""},
		{"DELETE", "/api/v1/hubs/chat/groups/g1/users/u1", "", 202, ""},
		{"DELETE", "/api/hubs/chat/users/u1/groups/g1", "", 204, ""},
		{"DELETE", "/api/v1/hubs/chat/users/u1/groups", "", 202, ""},
		{"DELETE", "/api/hubs/chat/users/u1/groups", "", 204, ""},

		// Closes.
		{"DELETE", "/api/v1/hubs/chat/connections/{c}?reason=bye", "", 202, ""},
		{"DELETE", "/api/hubs/chat/connections/{c}", "", 200, ""},
		{"DELETE", "/api/hubs/chat/connections/unknown", "", 200, ""},
		{"POST", "/api/hubs/chat/:closeConnections?excluded={c}", "", 204, ""},
		{"POST", "/api/hubs/chat/groups/g1/:closeConnections", "", 204, ""},
		{"POST", "/api/hubs/chat/users/u1/:closeConnections?reason=x", "", 204, ""},

		// 2024-12-01.
		{"GET", "/api/hubs/chat/groups/g1/connections?api-version=2024-12-01", "", 200, ""},
		{"POST", "/api/hubs/chat/:generateToken?userId=u1", "", 200, ""},
		{"POST", "/api/hubs/chat/:execute", `[]`, 202, ""},
		{"POST", "/api/v1/hubs/chat/:execute?filter=userId%20eq%20%27u1%27", `[{"type":"JoinGroup","group":"g2"}]`, 202, ""},
		{"POST", "/api/hubs/chat/connections/unknown/:invoke", invocation, 404, "Error.Connection.NotExisted"},
		{"POST", "/api/hubs/chat/connections/unknown/streams/s1/:send", `1`, 404, "Error.Connection.NotExisted"},
		{"POST", "/api/hubs/chat/connections/unknown/streams/s1/:complete", "", 404, "Error.Connection.NotExisted"},
		{"GET", "/api/auth/accessKey", "", 501, "Error.NotSupported"},

		// Routing.
		{"GET", "/api/hubs/chat/nothing/here", "", 404, "Error.NotFound"},
		{"GET", "/api/v1-preview/hub/chat", "", 404, "Error.NotFound"},
		{"PATCH", "/api/hubs/chat/users/u1", "", 405, "Error.MethodNotAllowed"},
		{"POST", "/api/hubs/chat/users/u1/groups/g1", "", 405, "Error.MethodNotAllowed"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			t.Parallel()
			e, c := fixture(t)
			target := strings.ReplaceAll(tt.target, "{c}", url.PathEscape(c.ID()))
			got := e.req(tt.method, target, tt.body)
			if got.status != tt.want {
				t.Errorf("status = %d, want %d (body %q)", got.status, tt.want, got.body)
			}
			if code := got.header.Get("x-ms-error-code"); code != tt.code {
				t.Errorf("x-ms-error-code = %q, want %q", code, tt.code)
			}
			if tt.method == http.MethodHead && got.body != "" {
				t.Errorf("HEAD answer has a body: %q", got.body)
			}
		})
	}
}

func TestHealthIsAnonymous(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, target := range []string{"/api/health", "/api/v1/health", "/api/health?api-version=2022-06-01", "/api/HEALTH/"} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if got := e.req(m, target, "", "Authorization", "-"); got.status != http.StatusOK || got.body != "" {
				t.Errorf("%s %s without token = %d %q, want 200 and no body", m, target, got.status, got.body)
			}
		}
	}
	got := e.req(http.MethodPost, "/api/health", "", "Authorization", "-")
	if got.status != http.StatusMethodNotAllowed || got.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /api/health = %d Allow %q, want 405 Allow \"GET, HEAD\"", got.status, got.header.Get("Allow"))
	}
}

func TestErrorBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// 2022-06-01 paths: ErrorDetail JSON with every field present.
	got := e.req(http.MethodGet, "/api/hubs/chat/connections/nope", "")
	if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var detail map[string]any
	if err := json.Unmarshal([]byte(got.body), &detail); err != nil {
		t.Fatalf("body %q: %v", got.body, err)
	}
	for _, k := range []string{"code", "message", "target", "details", "inner"} {
		if _, ok := detail[k]; !ok {
			t.Errorf("ErrorDetail lacks %q: %s", k, got.body)
		}
	}
	if detail["code"] != "Warning.Connection.NotExisted" || !strings.Contains(detail["message"].(string), "nope") {
		t.Errorf("ErrorDetail = %s", got.body)
	}

	// v1 paths: a plain-text message.
	got = e.req(http.MethodPost, "/api/v1/hubs/chat/groups/%20", invocation)
	if got.status != http.StatusBadRequest || !strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") ||
		got.body != "Invalid group name. Valid group name should be in between 1 and 1024 characters long." {
		t.Errorf("v1 invalid group = %d %q %q", got.status, got.header.Get("Content-Type"), got.body)
	}
	got = e.req(http.MethodPost, "/api/hubs/chat/groups/%20/:send", invocation)
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, `"code":"Error.BadRequest"`) ||
		!strings.Contains(got.body, `"target":"group"`) {
		t.Errorf("2022 invalid group = %d %q", got.status, got.body)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	long := strings.Repeat("g", 1025)
	tests := []struct {
		method, target, body, ctype string
		want                        int
		inBody                      string
	}{
		{"POST", "/api/hubs/1chat/:send", invocation, "", 400, "Invalid hub name"},
		{"POST", "/api/hubs/ch%20at/:send", invocation, "", 400, "Invalid hub name"},
		{"POST", "/api/hubs/" + strings.Repeat("h", 129) + "/:send", invocation, "", 400, "Invalid hub name"},
		{"POST", "/api/hubs/chat/:send?application=9app", invocation, "", 400, "Invalid application name"},
		{"POST", "/api/hubs/" + strings.Repeat("h", 100) + "/:send?application=" + strings.Repeat("a", 100), invocation, "", 400, "longer than 128"},
		{"POST", "/api/hubs/chat/groups/" + long + "/:send", invocation, "", 400, "Invalid group name"},
		{"PUT", "/api/hubs/chat/users/u1/groups/%09%20", "", "", 400, "Invalid group name"},
		{"POST", "/api/hubs/chat/:send", "", "", 400, "Message in request body is required."},
		{"POST", "/api/hubs/chat/:send", `{"arguments":[1]}`, "", 400, "Target is required."},
		{"POST", "/api/hubs/chat/:send", `{"target":`, "", 400, "not valid JSON"},
		{"POST", "/api/hubs/chat/:send", invocation, "text/plain", 415, "application/json"},
		{"POST", "/api/hubs/chat/:send", "\x81\xa4json\xc4\x01x", "application/octet-stream", 400, "json"},
		{"PUT", "/api/hubs/chat/users/u1/groups/g?ttl=-1", "", "", 400, "Invalid ttl"},
		{"PUT", "/api/hubs/chat/users/u1/groups/g?ttl=soon", "", "", 400, "Invalid ttl"},
		{"GET", "/api/hubs/chat/groups/g/connections?maxpagesize=201", "", "", 400, "maxpagesize"},
		{"GET", "/api/hubs/chat/groups/g/connections?top=0", "", "", 400, "top"},
		{"GET", "/api/hubs/chat/groups/g/connections?continuationToken=***", "", "", 400, "continuationToken"},
		{"POST", "/api/hubs/chat/:generateToken?minutesToExpire=0", "", "", 400, "minutesToExpire"},
		{"POST", "/api/hubs/chat/:send?a=%zz", invocation, "", 400, "Invalid query string"},
	}
	for _, tt := range tests {
		hdr := []string{}
		if tt.ctype != "" {
			hdr = append(hdr, "Content-Type", tt.ctype)
		}
		got := e.req(tt.method, tt.target, tt.body, hdr...)
		if got.status != tt.want || !strings.Contains(got.body, tt.inBody) {
			t.Errorf("%s %.60s = %d %q, want %d containing %q", tt.method, tt.target, got.status, got.body, tt.want, tt.inBody)
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	const target = "/api/hubs/chat/:send?api-version=2022-06-01"
	other, err := e.keys.MintServerToken(e.srv.URL+target, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(aud string, ttl time.Duration) string {
		t.Helper()
		tok, err := e.keys.MintServerToken(aud, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// A token signed with another key.
	otherRing := mustRing(t, "another-key-of-sufficient-length-0123456789")
	wrongKey, err := otherRing.MintServerToken(e.srv.URL+target, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Expired beyond the clock skew, signed with the right key.
	signer, err := jwt.NewSignerHS(jwt.HS256, []byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	expiredToken, err := jwt.NewBuilder(signer).Build(map[string]any{
		"aud": e.srv.URL + target, "exp": time.Now().Add(-time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	expired := expiredToken.String()

	tests := []struct {
		name, authz string
		want        int
		why         string
	}{
		{"missing", "-", 401, "a bearer token is required"},
		{"not bearer", "Basic dXNlcjpwYXNz", 401, "malformed"},
		{"garbage", "Bearer abc.def.ghi", 401, "malformed"},
		{"wrong key", "Bearer " + wrongKey, 401, "signature"},
		{"expired", "Bearer " + expired, 401, "expired"},
		{"wrong path", "Bearer " + mint(e.srv.URL+"/api/hubs/other/:send", time.Hour), 401, "audience"},
		{"valid", "Bearer " + other, 202, ""},
		// The SDK signs with the query and without the port; case differs in the hub.
		{"query, host and case ignored", "Bearer " + mint("https://example.com/api/hubs/CHAT/:send?application=x&api-version=2022-06-01", time.Hour), 202, ""},
		{"trailing slash", "Bearer " + mint("http://h/api/hubs/chat/:send/", time.Hour), 202, ""},
	}
	for _, tt := range tests {
		got := e.req(http.MethodPost, target, invocation, "Authorization", tt.authz)
		if got.status != tt.want {
			t.Errorf("%s: status %d, want %d (%q)", tt.name, got.status, tt.want, got.body)
			continue
		}
		if tt.want != 401 {
			continue
		}
		wa := got.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, `Bearer error="invalid_token", error_description="`) || !strings.Contains(wa, tt.why) {
			t.Errorf("%s: WWW-Authenticate = %q, want invalid_token mentioning %q", tt.name, wa, tt.why)
		}
		if got.header.Get("x-ms-error-code") != "Error.Unauthorized" {
			t.Errorf("%s: x-ms-error-code = %q", tt.name, got.header.Get("x-ms-error-code"))
		}
	}
}

// TestSends checks what clients receive: the canonical JSON invocation for JSON bodies
// (PascalCase or camelCase names), the variants map as a binary message for octet-stream.
func TestSends(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.connect("chat", "u1")
	b := e.connect("chat", "u2")
	other := e.connect("other", "u1")
	if err := e.hub("chat").JoinGroup(b.Conn, "g"); err != nil {
		t.Fatal(err)
	}
	want := `json:{"type":1,"target":"newMessage","arguments":["hi",{"n":12345678901234567890}]}`
	pascal := `{"Target":"newMessage","Arguments":["hi",{"n":12345678901234567890}]}`
	camel := `{"target":"newMessage","arguments":["hi",{"n":12345678901234567890}]}`

	blob := []byte(`{"type":1,"target":"t","arguments":[1]}` + "\x1e")
	variants := msgp.AppendMapHeader(nil, 1)
	variants = msgp.AppendString(variants, "json")
	variants = msgp.AppendBytes(variants, blob)

	tests := []struct {
		name, target, body, ctype string
		wantA, wantB              []string
	}{
		{"broadcast PascalCase", "/api/hubs/chat/:send", pascal, "application/json; charset=utf-8", []string{want}, []string{want}},
		{"broadcast v1 camelCase", "/api/v1/hubs/chat", camel, "application/json", []string{want}, []string{want}},
		{"hub name case-insensitive", "/api/hubs/CHAT/:send", camel, "", []string{want}, []string{want}},
		{"excluded, repeated", "/api/hubs/chat/:send?excluded={b}&excluded=zzz", camel, "", []string{want}, nil},
		{"user", "/api/hubs/chat/users/u2/:send", camel, "", nil, []string{want}},
		{"group v1 with excluded", "/api/v1/hubs/chat/groups/g?excluded={a}", camel, "", nil, []string{want}},
		{"group", "/api/hubs/chat/groups/g/:send", camel, "", nil, []string{want}},
		{"connection", "/api/hubs/chat/connections/{a}/:send", camel, "", []string{want}, nil},
		{"connection v1", "/api/v1/hubs/chat/connections/{b}", camel, "", nil, []string{want}},
		{"octet-stream variants", "/api/hubs/chat/:send", string(variants), "application/octet-stream", []string{"binary:" + string(variants)}, []string{"binary:" + string(variants)}},
		{"other hub's conns untouched", "/api/hubs/nobody/:send", camel, "", nil, nil},
	}
	for _, tt := range tests {
		target := strings.NewReplacer("{a}", url.PathEscape(a.ID()), "{b}", url.PathEscape(b.ID())).Replace(tt.target)
		hdr := []string{}
		if tt.ctype != "" {
			hdr = append(hdr, "Content-Type", tt.ctype)
		}
		if got := e.req(http.MethodPost, target, tt.body, hdr...); got.status != http.StatusAccepted {
			t.Errorf("%s: status %d %q", tt.name, got.status, got.body)
			continue
		}
		if got := a.received(); !slices.Equal(got, tt.wantA) {
			t.Errorf("%s: a received %q, want %q", tt.name, got, tt.wantA)
		}
		if got := b.received(); !slices.Equal(got, tt.wantB) {
			t.Errorf("%s: b received %q, want %q", tt.name, got, tt.wantB)
		}
		if got := other.received(); len(got) != 0 {
			t.Errorf("%s: a conn of another hub received %q", tt.name, got)
		}
	}
}

func TestApplicationPrefix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	inApp := e.connect("myapp_chat", "u1")
	plain := e.connect("chat", "u1")
	if got := e.req(http.MethodPost, "/api/hubs/Chat/:send?application=MyApp", invocation); got.status != http.StatusAccepted {
		t.Fatalf("status %d %q", got.status, got.body)
	}
	if len(inApp.received()) != 1 || len(plain.received()) != 0 {
		t.Error("the send with application=MyApp did not go to hub myapp_chat alone")
	}
	if got := e.req(http.MethodHead, "/api/hubs/chat/users/u1?application=myapp", ""); got.status != http.StatusOK {
		t.Errorf("user exists in app hub: %d", got.status)
	}
	if got := e.req(http.MethodHead, "/api/hubs/chat/users/u1?application=other", ""); got.status != http.StatusNotFound {
		t.Errorf("user exists in another app's hub: %d", got.status)
	}
	if got := e.req(http.MethodPost, "/api/hubs/chat/:send?application=", invocation); got.status != http.StatusAccepted ||
		len(plain.received()) != 1 {
		t.Errorf("empty application does not address the plain hub")
	}
}

// TestEscapedIDs: the SDK escapes ids with Uri.EscapeDataString, so '/' arrives as %2F and must
// stay inside its segment.
func TestEscapedIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.connect("chat", "user/a b")
	user := url.PathEscape("user/a b")
	user = strings.ReplaceAll(user, "/", "%2F")
	group := "g%2F1%3Ax"
	if got := e.req(http.MethodPut, "/api/hubs/chat/users/"+user+"/groups/"+group, ""); got.status != http.StatusOK {
		t.Fatalf("add user to group: %d %q", got.status, got.body)
	}
	if !c.InGroup("g/1:x") {
		t.Fatalf("conn groups = %q, want g/1:x", c.Groups())
	}
	if got := e.req(http.MethodPost, "/api/hubs/chat/users/"+user+"/:send", invocation); got.status != http.StatusAccepted ||
		len(c.received()) != 1 {
		t.Errorf("send to user with '/' in the id: %d", got.status)
	}
	if got := e.req(http.MethodHead, "/api/hubs/chat/groups/"+group, ""); got.status != http.StatusOK {
		t.Errorf("group with '/' exists: %d", got.status)
	}
	if got := e.req(http.MethodHead, "/api/hubs/chat/groups/g", ""); got.status != http.StatusNotFound {
		t.Errorf("group g (the part before the escaped '/') exists: %d", got.status)
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxBody: 64})
	c := e.connect("chat", "u1")
	got := e.reqBytes(http.MethodPost, "/api/hubs/chat/:send", bodyOf(65))
	if got.status != http.StatusRequestEntityTooLarge || got.header.Get("x-ms-error-code") != "Error.PayloadTooLarge" {
		t.Errorf("65-byte body with a 64-byte limit: %d %q", got.status, got.body)
	}
	// Without a Content-Length the limit is found while reading.
	got = e.reqBytes(http.MethodPost, "/api/hubs/chat/:send", io.MultiReader(bodyOf(1000)))
	if got.status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 1000-byte body: %d %q", got.status, got.body)
	}
	body := `{"target":"t","arguments":["` + strings.Repeat("x", 64-len(`{"target":"t","arguments":[""]}`)) + `"]}`
	if got := e.req(http.MethodPost, "/api/hubs/chat/:send", body); got.status != http.StatusAccepted || len(c.received()) != 1 {
		t.Errorf("64-byte body: %d %q", got.status, got.body)
	}
}

func TestCloseConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.connect("chat", "u1")
	b := e.connect("chat", "u1")
	c := e.connect("chat", "u2")
	if got := e.req(http.MethodDelete, "/api/hubs/chat/connections/"+a.ID()+"?reason=kicked", ""); got.status != http.StatusOK {
		t.Fatalf("close: %d", got.status)
	}
	if got := a.link.closes(); !slices.Equal(got, []string{"kicked"}) || !a.Ended() {
		t.Errorf("a closes = %q ended=%v, want [kicked] true", got, a.Ended())
	}
	if got := e.req(http.MethodPost, "/api/hubs/chat/:closeConnections?excluded="+c.ID()+"&reason=maintenance", ""); got.status != http.StatusNoContent {
		t.Fatalf("close all: %d", got.status)
	}
	if got := b.link.closes(); !slices.Equal(got, []string{"maintenance"}) {
		t.Errorf("b closes = %q, want [maintenance]", got)
	}
	if c.Ended() {
		t.Error("excluded conn c was closed")
	}
	if got := e.req(http.MethodPost, "/api/hubs/chat/users/u2/:closeConnections", ""); got.status != http.StatusNoContent || !c.Ended() {
		t.Errorf("close user u2: %d ended=%v", got.status, c.Ended())
	}
}

func TestConnectionGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.connect("chat", "")
	id := url.PathEscape(c.ID())
	for _, g := range []string{"g1", "g2"} {
		if got := e.req(http.MethodPut, "/api/hubs/chat/groups/"+g+"/connections/"+id, ""); got.status != http.StatusOK {
			t.Fatalf("add to %s: %d", g, got.status)
		}
	}
	if got := sortedGroups(c); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("groups = %q", got)
	}
	e.req(http.MethodDelete, "/api/hubs/chat/connections/"+id+"/groups/g1", "")
	if got := sortedGroups(c); !slices.Equal(got, []string{"g2"}) {
		t.Errorf("after removing g1: %q", got)
	}
	e.req(http.MethodDelete, "/api/hubs/chat/connections/"+id+"/groups", "")
	if got := c.Groups(); len(got) != 0 {
		t.Errorf("after removing from all: %q", got)
	}
}

func sortedGroups(c client) []string {
	g := c.Groups()
	slices.Sort(g)
	return g
}

// TestUserGroupTags checks spec §7.6 through REST: future conns join a tagged group, ttl=0 only
// current ones, remove untags.
func TestUserGroupTags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	now := e.connect("chat", "u1")
	put := func(target string, want int) {
		t.Helper()
		if got := e.req(http.MethodPut, target, ""); got.status != want {
			t.Fatalf("PUT %s: %d %q", target, got.status, got.body)
		}
	}
	put("/api/hubs/chat/users/u1/groups/forever", http.StatusOK)
	put("/api/v1/hubs/chat/groups/timed/users/u1?ttl=3600", http.StatusAccepted)
	put("/api/hubs/chat/users/u1/groups/now-only?ttl=0", http.StatusOK)
	put("/api/hubs/chat/users/u2/groups/offline?ttl=60", http.StatusOK)

	if got := sortedGroups(now); !slices.Equal(got, []string{"forever", "now-only", "timed"}) {
		t.Errorf("current conn's groups = %q", got)
	}
	later := e.connect("chat", "u1")
	if got := sortedGroups(later); !slices.Equal(got, []string{"forever", "timed"}) {
		t.Errorf("later conn's groups = %q, want [forever timed]", got)
	}
	if got := e.req(http.MethodHead, "/api/hubs/chat/users/u2/groups/offline", ""); got.status != http.StatusOK {
		t.Errorf("tagged user without conns in group: %d, want 200", got.status)
	}
	if got := sortedGroups(e.connect("chat", "u2")); !slices.Equal(got, []string{"offline"}) {
		t.Errorf("u2's first conn's groups = %q, want [offline]", got)
	}

	if got := e.req(http.MethodDelete, "/api/hubs/chat/users/u1/groups/forever", ""); got.status != http.StatusNoContent {
		t.Fatalf("remove: %d", got.status)
	}
	if now.InGroup("forever") || later.InGroup("forever") {
		t.Error("remove user from group left a conn in it")
	}
	if got := e.req(http.MethodGet, "/api/hubs/chat/users/u1/groups/forever", ""); got.status != http.StatusNotFound ||
		got.header.Get("x-ms-error-code") != "Info.User.NotInGroup" {
		t.Errorf("user in removed group: %d %q", got.status, got.header.Get("x-ms-error-code"))
	}
	if g := e.connect("chat", "u1").Groups(); !slices.Equal(g, []string{"timed"}) {
		t.Errorf("conn after removal joined %q, want [timed]", g)
	}
	if got := e.req(http.MethodDelete, "/api/hubs/chat/users/u1/groups", ""); got.status != http.StatusNoContent {
		t.Fatalf("remove from all: %d", got.status)
	}
	if len(now.Groups()) != 0 || len(later.Groups()) != 0 || len(e.connect("chat", "u1").Groups()) != 0 {
		t.Error("remove user from all groups left memberships or tags")
	}
}

func TestListGroupPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoint: "https://public.example"})
	want := map[string]string{}
	for _, user := range []string{"u1", "", "u3", "u4", ""} {
		c := e.connect("chat", user)
		if err := e.hub("chat").JoinGroup(c.Conn, "g"); err != nil {
			t.Fatal(err)
		}
		want[c.ID()] = user
	}
	e.connect("chat", "outsider")

	type page struct {
		Value []struct {
			ConnectionID string  `json:"connectionId"`
			UserID       *string `json:"userId"`
		} `json:"value"`
		NextLink *string `json:"nextLink"`
	}
	list := func(target string) (got map[string]string, pages int) {
		got = map[string]string{}
		for target != "" {
			r := e.req(http.MethodGet, target, "")
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %q", target, r.status, r.body)
			}
			var p page
			if err := json.Unmarshal([]byte(r.body), &p); err != nil {
				t.Fatal(err)
			}
			pages++
			for _, v := range p.Value {
				u := ""
				if v.UserID != nil {
					u = *v.UserID
				}
				got[v.ConnectionID] = u
			}
			target = ""
			if p.NextLink != nil {
				rest, ok := strings.CutPrefix(*p.NextLink, "https://public.example")
				if !ok {
					t.Fatalf("nextLink %q is not on the public endpoint", *p.NextLink)
				}
				target = rest
			}
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		return got, pages
	}
	got, pages := list("/api/hubs/chat/groups/g/connections?maxpagesize=2&api-version=2024-12-01")
	if pages != 3 || len(got) != 5 {
		t.Errorf("maxpagesize=2: %d pages, %d members; want 3 and 5", pages, len(got))
	}
	for id, u := range want {
		if got[id] != u {
			t.Errorf("member %s: user %q, want %q", id, got[id], u)
		}
	}
	if got, _ := list("/api/hubs/chat/groups/g/connections?maxpagesize=2&top=3"); len(got) != 3 {
		t.Errorf("top=3 listed %d members", len(got))
	}
	if got, pages := list("/api/hubs/chat/groups/empty/connections"); len(got) != 0 || pages != 1 {
		t.Errorf("empty group: %d members over %d pages", len(got), pages)
	}
}

func TestGenerateToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{endpoint: "http://localhost:8081"})
	got := e.req(http.MethodPost, "/api/hubs/Chat/:generateToken?application=App&userId=alice&minutesToExpire=5", "")
	if got.status != http.StatusOK {
		t.Fatalf("status %d %q", got.status, got.body)
	}
	var resp struct{ Token string }
	if err := json.Unmarshal([]byte(got.body), &resp); err != nil || resp.Token == "" {
		t.Fatalf("body %q: %v", got.body, err)
	}
	claims, err := e.keys.VerifySignalRClientToken(resp.Token, "app_chat", time.Time{})
	if err != nil {
		t.Fatalf("token does not verify for hub app_chat: %v", err)
	}
	if claims.UserID != "alice" {
		t.Errorf("user id %q, want alice", claims.UserID)
	}
	if left := time.Until(claims.Expires); left <= 0 || left > 5*time.Minute+time.Second {
		t.Errorf("token lives %v, want at most 5m", left)
	}
	if _, err := e.keys.VerifySignalRClientToken(resp.Token, "chat", time.Time{}); err == nil {
		t.Error("token is also valid for hub chat")
	}
}

// TestSharedRegistry: both REST APIs register the same metric families on one registry (the
// server shares it), and the operation label tells them apart.
func TestSharedRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if _, err := webpubsub.NewHandler(webpubsub.Config{Node: e.node, Keys: e.keys, Registerer: e.reg}); err != nil {
		t.Fatalf("webpubsub handler on the registry of the signalr handler: %v", err)
	}
	if _, err := signalr.NewHandler(signalr.Config{Node: e.node, Keys: e.keys, Registerer: e.reg}); err != nil {
		t.Fatalf("second signalr handler on the same registry: %v", err)
	}
	e.req(http.MethodHead, "/api/hubs/chat/users/nobody", "")
	e.req(http.MethodPost, "/api/hubs/chat/:send", "{")
	e.req(http.MethodPost, "/api/hubs/chat/:send", invocation)
	e.req(http.MethodPost, "/api/v1/hubs/chat", invocation)
	const want = `# HELP switchboard_rest_requests_total Web PubSub REST requests, by operation and status code.
# TYPE switchboard_rest_requests_total counter
switchboard_rest_requests_total{operation="SignalRService_Broadcast",status="202"} 2
switchboard_rest_requests_total{operation="SignalRService_Broadcast",status="400"} 1
switchboard_rest_requests_total{operation="SignalRService_CheckUserExistence",status="404"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "switchboard_rest_requests_total"); err != nil {
		t.Error(err)
	}
}

func mustRing(t *testing.T, key string) *auth.KeyRing {
	t.Helper()
	r, err := auth.NewKeyRing(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewHandlerConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, cfg := range []signalr.Config{
		{Keys: e.keys},
		{Node: e.node},
		{Node: e.node, Keys: e.keys, MaxBodyBytes: -1},
	} {
		if _, err := signalr.NewHandler(cfg); err == nil {
			t.Errorf("NewHandler(%+v) accepted", cfg)
		}
	}
}
