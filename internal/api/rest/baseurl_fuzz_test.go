package rest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzBaseURL: whatever the forwarding headers hold, BaseURL is "http(s)://host" and
// nothing more: a URL that parses, with no user info, path, query or fragment, so that
// nextLinks and token audiences built on it point at a host and nowhere else.
func FuzzBaseURL(f *testing.F) {
	for _, s := range []string{"a.example.com", "host=a.example.com;proto=https", `host="a:1"`, "evil/x", "u@evil",
		"[::1]:80", "a%zz", "a b", "a\tb", "a.example.com:", "[::1", "a:b:c", "x;host=y", "ünï.example"} {
		f.Add(s, s, "https")
	}
	f.Fuzz(func(t *testing.T, fwd, xhost, xproto string) {
		r := httptest.NewRequest(http.MethodGet, "/api/x", nil)
		r.Host = "h.example.com"
		r.Header["Forwarded"] = []string{fwd}
		r.Header["X-Forwarded-Host"] = []string{xhost}
		r.Header["X-Forwarded-Proto"] = []string{xproto}
		got := BaseURL(r, "")
		scheme, host, ok := strings.Cut(got, "://")
		if !ok || (scheme != "http" && scheme != "https") || host == "" {
			t.Fatalf("BaseURL = %q: not http(s)://host", got)
		}
		u, err := url.Parse(got + "/api/hubs/x")
		if err != nil {
			t.Fatalf("BaseURL = %q: the link does not parse: %v", got, err)
		}
		if u.User != nil || u.Host != host || u.Path != "/api/hubs/x" || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("BaseURL = %q: link %q has host %q, path %q, user %v, query %q, fragment %q",
				got, u, u.Host, u.Path, u.User, u.RawQuery, u.Fragment)
		}
	})
}
