package signalr_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/core"
)

// FuzzRouter sends arbitrary methods, request targets and bodies, with and without a valid
// token: the handler must never panic nor answer 5xx (501 for the unsupported operations
// aside), and HEAD answers carry no body.
func FuzzRouter(f *testing.F) {
	methods := []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
	seeds := []struct {
		method byte
		target string
		body   string
		token  bool
	}{
		{2, "/api/hubs/chat/:send?api-version=2022-06-01", `{"Target":"t","Arguments":[1]}`, true},
		{2, "/api/v1/hubs/chat", `{"target":"t"}`, true},
		{0, "/api/health", "", false},
		{1, "/api/v1/health", "", false},
		{1, "/api/hubs/chat/connections/n1_abc", "", true},
		{3, "/api/hubs/chat/users/user%2Fa/groups/g?ttl=5", "", true},
		{3, "/api/v1/hubs/chat/groups/g/users/u?ttl=-1", "", true},
		{4, "/api/hubs/chat/users/u/groups", "", true},
		{4, "/api/hubs/chat/connections/c?reason=bye", "", true},
		{0, "/api/hubs/chat/groups/g/connections?maxpagesize=1&top=2&continuationToken=YQ", "", true},
		{2, "/api/hubs/chat/:generateToken?userId=u&minutesToExpire=99999999999999", "", true},
		{2, "/api/hubs/chat/:closeConnections?excluded=a&excluded=b", "", true},
		{2, "/api/hubs/chat/groups/%20/:send", "\x81\xa4json\xc4\x00", true},
		{2, "/api/hubs/chat/:send?application=app", "[]", true},
		{5, "/api/hubs/chat", "", true},
		{0, "/api/hubs//users/", "", true},
		{0, "/api/v1/v1/hubs/chat", "", true},
		{2, "/api/hubs/chat/connections/c/streams/s/:send", "", true},
		{2, "/api/hubs/chat/connections/c/streams/s/:send?completed=true", `{"a":1}`, true},
		{2, "/api/hubs/chat/connections/c/streams/s/:complete?reason=x", "", true},
		{2, "/api/hubs/chat/connections/c/:invoke", `{"target":"t","arguments":[1]}`, true},
		{2, "/api/hubs/chat/:execute?filter=userId%20eq%20%27u%27", `[{"type":"JoinGroup","group":"g2"},{"type":"SendMessage","message":{"target":"t"}}]`, true},
		{2, "/api/hubs/chat/:execute?filter=groups%20has", `[{"type":"LeaveGroup","group":"g"}]`, true},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body), s.token)
	}

	h, node, keys := newHandler(f, signalr.Config{MaxBodyBytes: 4 << 10, InvokeTimeout: 10 * time.Millisecond})
	hub, err := node.Hub("chat")
	if err != nil {
		f.Fatal(err)
	}
	for _, u := range []string{"u", "user/a", ""} {
		if _, err := hub.Connect(core.ConnInfo{UserID: u, Codec: codec{}, Groups: []string{"g"}}, &link{}); err != nil {
			f.Fatal(err)
		}
	}

	f.Fuzz(func(t *testing.T, m byte, target string, body []byte, withToken bool) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // the HTTP server answers 400 before the handler runs
		}
		r := &http.Request{
			Method: methods[int(m)%len(methods)], URL: u, RequestURI: target,
			Header: http.Header{}, Host: "example.com",
			Body: http.NoBody, ContentLength: int64(len(body)),
		}
		if len(body) > 0 {
			r.Body = httpBody(body)
			if body[0] == 0x81 {
				r.Header.Set("Content-Type", "application/octet-stream")
			}
		}
		if withToken {
			tok, err := keys.MintServerToken("http://example.com"+u.Path, time.Hour)
			if err == nil {
				r.Header.Set("Authorization", "Bearer "+tok)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 && w.Code != http.StatusNotImplemented {
			t.Fatalf("%s %q: status %d %q", r.Method, target, w.Code, w.Body.String())
		}
		if r.Method == http.MethodHead && w.Body.Len() > 0 {
			t.Fatalf("HEAD %q: body %q", target, w.Body.String())
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func httpBody(b []byte) readCloser { return readCloser{bytes.NewReader(b)} }
