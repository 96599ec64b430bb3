package webpubsub

import (
	"net/url"
	"strings"
	"testing"
)

// TestHugeBadFilterAnswerIsSmall: a 500 KB invalid filter, in the query or
// in the body, gets a 400 of under 1 KiB that still says what is wrong (the
// whole filter used to be echoed four times: 500 KB in, 2 MB out).
func TestHugeBadFilterAnswerIsSmall(t *testing.T) {
	filter := strings.Repeat("userId eq 'x' or ", 30000) + "bogus"
	e := newEnv(t, envOptions{})
	pathToken := e.token(e.srv.URL + "/api/hubs/chat/:send") // a token for the URL with the query would not fit in a request header
	for _, rq := range []request{
		{method: "POST", target: "/api/hubs/chat/:send?filter=" + url.QueryEscape(filter), contentType: "text/plain", body: "hello", token: pathToken},
		{method: "POST", target: "/api/hubs/chat/:addToGroups", contentType: "application/json",
			body: `{"groups":["g"],"filter":"` + strings.ReplaceAll(filter, "'", `\u0027`) + `"}`},
	} {
		e := newEnv(t, envOptions{maxBody: 1 << 20})
		res := e.do(rq)
		if res.status != 400 || res.header.Get("x-ms-error-code") != "Error.BadRequest" {
			t.Fatalf("%s: %d %q", rq.target[:min(len(rq.target), 30)], res.status, res.header.Get("x-ms-error-code"))
		}
		if len(res.body) > 1024 {
			t.Errorf("%s: a %d-byte filter got a %d-byte answer", rq.target[:min(len(rq.target), 30)], len(filter), len(res.body))
		}
		for _, want := range []string{"Invalid syntax for 'userId eq 'x' or", "filter is too long", "(Parameter 'filter')"} {
			if !strings.Contains(res.body, want) {
				t.Errorf("%s: answer %.300s does not say %q", rq.target[:min(len(rq.target), 30)], res.body, want)
			}
		}
	}
}
