package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// checkSignature verifies a ce-signature header with each key alone.
func checkSignature(t *testing.T, connID, header string) {
	t.Helper()
	if n := len(strings.Split(header, ",")); n != 2 {
		t.Errorf("ce-signature %q has %d entries, want 2", header, n)
	}
	for _, key := range []string{testKey1, testKey2} {
		ring, err := auth.NewKeyRing(key)
		if err != nil {
			t.Fatal(err)
		}
		if !ring.CheckSignature(connID, header) {
			t.Errorf("ce-signature %q does not verify with key %q", header, key)
		}
	}
	other, _ := auth.NewKeyRing("some-other-key")
	if other.CheckSignature(connID, header) {
		t.Errorf("ce-signature %q verifies with an unrelated key", header)
	}
}

// checkCommonHeaders checks the CloudEvents headers every event carries.
func checkCommonHeaders(t *testing.T, got recorded, conn Conn, ceType, eventName string) {
	t.Helper()
	want := map[string]string{
		"ce-specversion":         "1.0",
		"ce-awpsversion":         "1.0",
		"ce-type":                ceType,
		"ce-source":              "/hubs/" + conn.Hub + "/client/" + conn.ID,
		"ce-hub":                 conn.Hub,
		"ce-connectionId":        conn.ID,
		"ce-eventName":           eventName,
		"ce-userId":              conn.UserID,
		"ce-subprotocol":         conn.Subprotocol,
		"ce-connectionState":     conn.State,
		"WebHook-Request-Origin": testOrigin,
	}
	for k, v := range want {
		vs := got.header.Values(k)
		switch {
		case v == "" && len(vs) != 0:
			t.Errorf("%s = %q, want it omitted", k, vs)
		case v != "" && (len(vs) != 1 || vs[0] != v):
			t.Errorf("%s = %q, want %q", k, vs, v)
		}
	}
	if got.header.Get("ce-id") == "" {
		t.Error("ce-id missing")
	}
	if ts, err := time.Parse("2006-01-02T15:04:05Z", got.header.Get("ce-time")); err != nil || time.Since(ts) > time.Hour || time.Until(ts) > time.Hour {
		t.Errorf("ce-time = %q (%v)", got.header.Get("ce-time"), err)
	}
	checkSignature(t, conn.ID, got.header.Get("ce-signature"))
}

func TestConnectRequest(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	h := b.handler("/api/{hub}/{event}?code=secret")
	h.AuthHeader = "Bearer upstream-token"
	c, _ := newClient(t, Config{Handlers: handlers(h)})

	req := ConnectRequest{
		Conn: Conn{Hub: "chat", ID: "conn-1", UserID: "alice"},
		Claims: map[string]any{
			"sub":    "alice",
			"role":   []any{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"},
			"exp":    json.Number("1767225600"),
			"n":      float64(3.5),
			"b":      true,
			"obj":    map[string]any{"k": "v"},
			"groups": []string{"g1"},
		},
		Query:              map[string][]string{"foo": {"bar", "baz"}, "access_token": {"jwt"}},
		Headers:            map[string][]string{"User-Agent": {"test"}, "Cookie": {"a=b"}, "Authorization": {"Bearer jwt"}},
		Subprotocols:       []string{"json.reliable.webpubsub.azure.v1", "json.webpubsub.azure.v1"},
		ClientCertificates: []ClientCertificate{{Thumbprint: "abcd", Content: "-----BEGIN CERTIFICATE-----"}},
	}
	resp, err := c.Connect(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(resp, &ConnectResponse{}) {
		t.Errorf("Connect() = %+v, want an empty response for 204", resp)
	}
	posts := b.gotPosts()
	if len(posts) != 1 {
		t.Fatalf("%d POSTs, want 1", len(posts))
	}
	got := posts[0]
	checkCommonHeaders(t, got, req.Conn, "azure.webpubsub.sys.connect", "connect")
	if got.path != "/api/chat/connect" || got.query != "code=secret" {
		t.Errorf("request URL %s?%s", got.path, got.query)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if a := got.header.Get("Authorization"); a != "Bearer upstream-token" {
		t.Errorf("Authorization = %q", a)
	}
	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body %s: %v", got.body, err)
	}
	want := map[string]any{
		"claims": map[string]any{
			"sub": []any{"alice"}, "role": []any{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"},
			"exp": []any{"1767225600"}, "n": []any{"3.5"}, "b": []any{"true"}, "obj": []any{`{"k":"v"}`},
			"groups": []any{"g1"},
		},
		"query":              map[string]any{"foo": []any{"bar", "baz"}},
		"headers":            map[string]any{"User-Agent": []any{"test"}, "Cookie": []any{"a=b"}},
		"subprotocols":       []any{"json.reliable.webpubsub.azure.v1", "json.webpubsub.azure.v1"},
		"clientCertificates": []any{map[string]any{"thumbprint": "abcd", "content": "-----BEGIN CERTIFICATE-----"}},
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body\n got %v\nwant %v", body, want)
	}
}

func TestConnectRequestEmptyFields(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	conn := Conn{Hub: "chat", ID: "anon"}
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: conn}); err != nil {
		t.Fatal(err)
	}
	got := b.gotPosts()[0]
	checkCommonHeaders(t, got, conn, "azure.webpubsub.sys.connect", "connect")
	const want = `{"claims":{},"query":{},"headers":{},"subprotocols":[],"clientCertificates":[]}`
	if string(got.body) != want {
		t.Errorf("body = %s, want %s", got.body, want)
	}
}

func TestConnectResponses(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		status  int
		header  map[string][]string
		body    string
		want    *ConnectResponse
		wantErr error // errors.Is target
		reject  *RejectError
	}{
		{name: "204", status: 204, want: &ConnectResponse{}},
		{name: "empty 200", status: 200, want: &ConnectResponse{}},
		{name: "null", status: 200, body: "null", want: &ConnectResponse{}},
		{name: "full", status: 200, body: `{"userId":"bob","groups":["g1","g2"],"roles":["webpubsub.sendToGroup"],"subprotocol":"json.webpubsub.azure.v1","extra":1}`,
			want: &ConnectResponse{UserID: str("bob"), Groups: []string{"g1", "g2"}, Roles: []string{"webpubsub.sendToGroup"}, Subprotocol: "json.webpubsub.azure.v1"}},
		{name: "clears", status: 200, body: `{"userId":"","groups":[],"roles":[]}`,
			want: &ConnectResponse{UserID: str(""), Groups: []string{}, Roles: []string{}}},
		{name: "nulls", status: 200, body: `{"userId":null,"groups":null,"roles":null,"subprotocol":null}`, want: &ConnectResponse{}},
		{name: "201 json", status: 201, body: `{"userId":"c"}`, want: &ConnectResponse{UserID: str("c")}},
		{name: "state set", status: 200, header: map[string][]string{"ce-connectionState": {"c3RhdGU="}}, body: `{}`,
			want: &ConnectResponse{State: str("c3RhdGU=")}},
		{name: "state cleared", status: 204, header: map[string][]string{"ce-connectionState": {""}}, want: &ConnectResponse{State: str("")}},
		{name: "two states", status: 204, header: map[string][]string{"ce-connectionState": {"a", "b"}}, wantErr: ErrBadResponse},
		{name: "401 reason", status: 401, body: "Unauthorized: user bob is banned\n", reject: &RejectError{Status: 401, Reason: "Unauthorized: user bob is banned"}},
		{name: "400 empty", status: 400, reject: &RejectError{Status: 400}},
		{name: "500", status: 500, body: "boom", reject: &RejectError{Status: 500, Reason: "boom"}},
		{name: "302", status: 302, header: map[string][]string{"Location": {"/elsewhere"}}, wantErr: ErrBadResponse},
		{name: "invalid json", status: 200, body: `{"userId":`, wantErr: ErrBadResponse},
		{name: "not an object", status: 200, body: `["a"]`, wantErr: ErrBadResponse},
		{name: "wrong type", status: 200, body: `{"userId":5}`, wantErr: ErrBadResponse},
		{name: "trailing data", status: 200, body: `{} {}`, wantErr: ErrBadResponse},
		{name: "unoffered subprotocol", status: 200, body: `{"subprotocol":"mqtt"}`, wantErr: ErrBadResponse},
		{name: "oversized", status: 200, body: `{"userId":"` + strings.Repeat("x", 200) + `"}`, wantErr: ErrBadResponse},
		{name: "oversized reject", status: 403, body: strings.Repeat("y", 300), reject: &RejectError{Status: 403, Reason: strings.Repeat("y", 128)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				for k, vs := range tt.header {
					for _, v := range vs {
						w.Header().Add(k, v)
					}
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), MaxResponseBytes: 128})
			got, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn, Subprotocols: []string{"json.webpubsub.azure.v1"}})
			switch {
			case tt.reject != nil:
				var re *RejectError
				if !errors.As(err, &re) || *re != *tt.reject {
					t.Fatalf("Connect() = %v, %v; want %#v", got, err, tt.reject)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Connect() = %+v, %v; want %v", got, err, tt.wantErr)
				}
				var re *RejectError
				if errors.As(err, &re) {
					t.Fatalf("Connect() error %v is a RejectError", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("Connect() = %s, want %s", dump(got), dump(tt.want))
				}
			}
		})
	}
}

func dump(r *ConnectResponse) string {
	if r == nil {
		return "nil"
	}
	b, _ := json.Marshal(struct {
		*ConnectResponse
		GroupsNil, RolesNil bool
	}{r, r.Groups == nil, r.Roles == nil})
	return string(b)
}

func TestConnectNoHandler(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	h := b.handler("/")
	h.SystemEvents = []string{EventConnected}
	c, _ := newClient(t, Config{Handlers: handlers(h)})
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("Connect() = %v, want ErrNoHandler", err)
	}
	if n := len(b.gotPosts()) + len(b.gotValidations()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		<-r.Context().Done() // never answers
	})
	h := b.handler("/")
	h.Timeout = 50 * time.Millisecond
	c, reg := newClient(t, Config{Handlers: handlers(h)})
	_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect() = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if got := counter(c.metrics.requests.WithLabelValues("connect", "error")); got != 1 {
		t.Errorf("requests_total{connect,error} = %v", got)
	}
	_ = reg
}

func TestConnectCallerCancel(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		close(entered)
		<-r.Context().Done()
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-entered
		cancel()
	}()
	_, err := c.Connect(ctx, ConnectRequest{Conn: testConn})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect() = %v, want ErrUnavailable and Canceled", err)
	}
}

func TestConnectUnreachable(t *testing.T) {
	t.Parallel()
	addr := deadAddr(t)
	c, _ := newClient(t, Config{Handlers: handlers(Handler{URLTemplate: "http://" + addr + "/{event}?code=secret", SystemEvents: []string{"connect"}})})
	_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) {
		t.Fatalf("Connect() = %v, want ErrUnavailable, not refused", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error %q shows the URL's query", err)
	}
	if got := counter(c.metrics.validationFailures); got != 1 {
		t.Errorf("validation_failures_total = %v, want 1", got)
	}
}

func TestConnectAfterClose(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect() after Close = %v", err)
	}
	if _, err := c.UserEvent(context.Background(), testConn, "message", "text/plain", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("UserEvent() after Close = %v", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}
