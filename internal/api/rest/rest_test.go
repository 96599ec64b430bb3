package rest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestBaseURL(t *testing.T) {
	tests := []struct {
		name   string
		public string
		tls    bool
		host   string
		header map[string]string
		want   string
	}{
		{"request", "", false, "Example.com:8080", nil, "http://example.com:8080"},
		{"tls request", "", true, "example.com", nil, "https://example.com"},
		{"no host", "", false, "", nil, "http://localhost"},
		{"public endpoint wins, trailing slash dropped", "https://wps.example.com/", false, "10.0.0.1:8080",
			map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "proxy"}, "https://wps.example.com"},
		{"x-forwarded, first hop", "", false, "10.0.0.1", map[string]string{"X-Forwarded-Proto": "HTTPS, http", "X-Forwarded-Host": "a.example.com, b"}, "https://a.example.com"},
		{"forwarded, first element, quoted", "", false, "10.0.0.1",
			map[string]string{"Forwarded": `for=192.0.2.60;Proto=https;host="a.example.com:8443", for=10.0.0.2;proto=http;host=b`}, "https://a.example.com:8443"},
		{"forwarded before x-forwarded", "", false, "10.0.0.1",
			map[string]string{"Forwarded": "host=a.example.com", "X-Forwarded-Host": "b.example.com", "X-Forwarded-Proto": "https"}, "https://a.example.com"},
		{"a scheme other than http(s) is ignored", "", false, "h", map[string]string{"X-Forwarded-Proto": "javascript"}, "http://h"},
		{"a host with a path or user info is ignored", "", false, "h", map[string]string{"X-Forwarded-Host": "evil.example/x", "Forwarded": "host=u@evil"}, "http://h"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
		r.Host = tt.host
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		} else {
			r.TLS = nil
		}
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		if got := BaseURL(r, tt.public); got != tt.want {
			t.Errorf("%s: BaseURL = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestRouter(t *testing.T) {
	rt := NewRouter([]Route[string]{
		{Method: http.MethodPut, Pattern: "hubs/{hub}/groups/{group}/users/{user}", Action: "add"},
		{Method: http.MethodDelete, Pattern: "hubs/{hub}/groups/{group}/users/{user}", Action: "remove"},
		{Method: http.MethodHead, Pattern: "hubs/{hub}/groups/{group}/users/{user}", Action: "exists"},
	})
	m := rt.Match([]string{"HUBS", "chat", "Groups", "g/1", "users", "u"}, http.MethodDelete)
	if !m.Found || m.Action != "remove" || m.Params != (Params{Hub: "chat", Group: "g/1", User: "u"}) {
		t.Errorf("Match = %+v", m)
	}
	m = rt.Match([]string{"hubs", "chat", "groups", "g", "users", "u"}, http.MethodPost)
	if m.Found || !slices.Equal(m.Allowed, []string{"DELETE", "HEAD", "PUT"}) {
		t.Errorf("wrong method: %+v, want Allowed sorted", m)
	}
	m = rt.Match([]string{"hub", "chat", "groups", "g", "users", "u"}, http.MethodPut)
	if m.Found || m.Allowed != nil {
		t.Errorf("literal hubs matched hub: %+v", m)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewRouter took an unknown variable")
		}
	}()
	NewRouter([]Route[string]{{Method: "GET", Pattern: "hubs/{hubb}"}})
}

func TestSplitPath(t *testing.T) {
	tests := []struct {
		escaped string
		segs    []string
		ok, bad bool
	}{
		{"/api/hubs/chat/users/user%2Fa/:send/", []string{"hubs", "chat", "users", "user/a", ":send"}, true, false},
		{"/api/", []string{""}, true, false},
		{"/client/hubs/chat", nil, false, false},
		{"/api/hubs/%zz", nil, true, true},
	}
	for _, tt := range tests {
		segs, ok, err := SplitPath(tt.escaped)
		if ok != tt.ok || (err != nil) != tt.bad || !slices.Equal(segs, tt.segs) {
			t.Errorf("SplitPath(%q) = %q %v %v", tt.escaped, segs, ok, err)
		}
	}
}

func TestQuery(t *testing.T) {
	if _, err := ParseQuery("a=%zz"); err == nil {
		t.Error("a malformed query parsed")
	}
	q, err := ParseQuery("Excluded=c1&excluded=&EXCLUDED=c2&TTL=30&top=x&big=99999999999999999999")
	if err != nil {
		t.Fatal(err)
	}
	if got := q.Excluded(); !slices.Equal(got, []string{"c1", "c2"}) && !slices.Equal(got, []string{"c2", "c1"}) {
		t.Errorf("Excluded = %q", got)
	}
	if n, present, err := q.Int("ttl", 0, 300); n != 30 || !present || err != nil {
		t.Errorf("Int(ttl) = %d %v %v", n, present, err)
	}
	if _, present, err := q.Int("missing", 0, 1); present || err != nil {
		t.Errorf("Int(missing) = %v %v", present, err)
	}
	for _, name := range []string{"top", "big", "ttl"} {
		hi := int64(10)
		if _, _, err := q.Int(name, 0, hi); err == nil {
			t.Errorf("Int(%s) within [0, %d] accepted", name, hi)
		} else if e := (*Error)(nil); !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Target != name {
			t.Errorf("Int(%s): %v", name, err)
		}
	}
}

// TestQueryMergesCaseVariantsInOneOrder: names that differ only in case are one parameter, and
// which value Get returns does not change from one parse to the next.
func TestQueryMergesCaseVariantsInOneOrder(t *testing.T) {
	for range 50 {
		q, err := ParseQuery("UserId=a&userid=b&USERID=c")
		if err != nil {
			t.Fatal(err)
		}
		if got := q.All("userId"); !slices.Equal(got, []string{"c", "a", "b"}) {
			t.Fatalf("All(userId) = %q, want the variants in the order of their names: [c a b]", got)
		}
	}
}

func TestReadBody(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 11)))
	r.ContentLength = -1 // chunked: only the reader can tell
	if _, err := ReadBody(w, r, 10); err == nil || err.(*Error).Status != http.StatusRequestEntityTooLarge {
		t.Errorf("11 bytes under a limit of 10: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader("0123456789"))
	if b, err := ReadBody(w, r, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("10 bytes: %q %v", b, err)
	}
}

func TestResolve(t *testing.T) {
	errA := errors.New("a")
	type rule Rule
	rules := []rule{{errA, http.StatusNotFound, "Error.A", "conn", "Conn `%s` is gone."}}
	if got := Resolve(rules, fmt.Errorf("op: %w", errA), "c1"); got.Status != 404 || got.Message != "Conn `c1` is gone." || got.Target != "conn" {
		t.Errorf("rule: %+v", got)
	}
	own := BadRequest("p", "bad %d", 1)
	if got := Resolve(rules, fmt.Errorf("ctx: %w", own), ""); got != own {
		t.Errorf("an Error is not passed through: %+v", got)
	}
	if got := Resolve(rules, errors.New("secret detail"), ""); got.Status != 500 || strings.Contains(got.Message, "secret") {
		t.Errorf("unknown error: %+v", got)
	}
}
