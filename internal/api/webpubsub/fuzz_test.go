package webpubsub

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
)

// FuzzRoutes feeds random methods, paths, query strings, content types and
// bodies, with and without a valid token: the handler must never panic nor
// answer 5xx, HEAD answers carry no body, and every answer names the
// supported api-versions.
func FuzzRoutes(f *testing.F) {
	// Seeds: every route with sample variables, plus the queries the tests use.
	vars := strings.NewReplacer("{hub}", "chat", "{group}", "g1", "{user}", "alice", "{conn}", "n1_x", "{perm}", "joinLeaveGroup")
	queries := []string{
		"", "api-version=2024-12-01", "excluded=a&excluded=b&filter=userId%20eq%20'alice'",
		"filter=invalid%20filter", "messageTtlSeconds=301", "targetName=g1", "reason=bye",
		"top=5&maxpagesize=2", "continuationToken=bjFfeA", "userId=u&role=r&group=g&minutesToExpire=9999999999999&clientType=MQTT",
		"filter=100%zz", "filter=length(groups)%20gt%20-1",
	}
	for _, rt := range routeTable() {
		p := "/api/" + vars.Replace(rt.Pattern)
		for i, q := range queries {
			ct, body := "text/plain", []byte("hi")
			switch i % 3 {
			case 1:
				ct, body = "application/json", []byte(`{"groups":["g1"],"filter":"'g1' in groups"}`)
			case 2:
				ct, body = "", []byte{0, 1, 2}
			}
			f.Add(rt.Method, p, q, ct, body, i%4 != 3)
		}
	}
	f.Add("GET", "/api/hubs/%zz/:send", "", "", []byte(nil), true)
	f.Add("PUT", "/api/hubs/chat/users/a%2Fb/groups/%20", "", "image/png", []byte("x"), true)
	f.Add("POST", "/api/hubs/chat/:addToGroups", "", "application/json", []byte(`{"groups":null,"filter":5}`), true)

	node, err := core.NewNode(core.Config{NodeID: "n1"})
	if err != nil {
		f.Fatal(err)
	}
	keys, err := auth.NewKeyRing(testKey)
	if err != nil {
		f.Fatal(err)
	}
	h, err := NewHandler(Config{Node: node, Keys: keys, MaxBodyBytes: 4 << 10})
	if err != nil {
		f.Fatal(err)
	}
	hub, err := node.Hub("chat")
	if err != nil {
		f.Fatal(err)
	}
	conns := make([]*core.Conn, 3)
	links := make([]*testLink, 3)
	users := []string{"alice", "bob", ""}

	f.Fuzz(func(t *testing.T, method, path, query, contentType string, body []byte, authed bool) {
		// Keep a few live conns so that sends, filters and listings have work.
		for i, c := range conns {
			if c == nil || c.Ended() {
				l := &testLink{}
				c, err := hub.Connect(core.ConnInfo{UserID: users[i], Groups: []string{"g1"}, Codec: testCodec{}}, l)
				if err != nil {
					t.Fatal(err)
				}
				conns[i], links[i] = c, l
			}
			conns[i].Drain(links[i], nil)
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method = method
		r.URL = u
		r.RequestURI = target
		r.Host = "example.com"
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if authed {
			tok, err := keys.MintServerToken("http://example.com"+u.EscapedPath(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 || w.Code < 200 {
			t.Fatalf("%s %s: status %d: %s", method, target, w.Code, w.Body)
		}
		if method == http.MethodHead && w.Body.Len() != 0 {
			t.Fatalf("HEAD %s: body %q", target, w.Body)
		}
		if w.Header().Get("api-supported-versions") != supportedVersions {
			t.Fatalf("%s %s: no api-supported-versions", method, target)
		}
	})
}
