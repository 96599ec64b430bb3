package signalr_test

import (
	"net/url"
	"strings"
	"testing"
)

// TestExecuteHugeBadFilterAnswerIsSmall: a 500 KB invalid filter gets a 400
// of under 1 KiB that still says what is wrong (the whole filter used to be
// echoed, twice).
func TestExecuteHugeBadFilterAnswerIsSmall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	filter := strings.Repeat("userId eq 'x' or ", 30000) + "bogus"
	r := e.req("POST", "/api/hubs/chat/:execute?api-version=2024-12-01&filter="+url.QueryEscape(filter), `[]`,
		"Authorization", "Bearer "+e.token("/api/hubs/chat/:execute")) // a token for the URL with the query would not fit in a request header
	if r.status != 400 || r.header.Get("x-ms-error-code") != "Error.BadRequest" {
		t.Fatalf("%d %q", r.status, r.header.Get("x-ms-error-code"))
	}
	if len(r.body) > 1024 {
		t.Errorf("a %d-byte filter got a %d-byte answer", len(filter), len(r.body))
	}
	for _, want := range []string{"Invalid syntax for 'userId eq 'x' or", "filter is too long", "(Parameter 'filter')"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("answer %.300s does not say %q", r.body, want)
		}
	}
}
