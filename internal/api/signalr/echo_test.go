package signalr_test

import (
	"strings"
	"testing"
)

// TestHugeInputAnswerIsSmall: a value of 40 KB in any position an error
// answer quotes (path, method, path segment, query parameter, header, body
// field) gets an answer of under 1 KiB that still says what is wrong; the
// value used to be echoed whole.
func TestHugeInputAnswerIsSmall(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 40000)
	digits := strings.Repeat("9", 40000)
	e := newEnv(t, envOptions{maxBody: 1 << 20})
	bearer := func(path string) []string { return []string{"Authorization", "Bearer " + e.token(path)} }
	const v = "?api-version=2024-12-01"
	tests := []struct {
		name                 string
		method, target, body string
		hdr                  []string
		status               int
		want                 string
	}{
		{"path", "GET", "/api/" + big, "", nil, 404, "No operation matches GET /api/xxx"},
		{"method", "X" + big, "/api/hubs/chat/:send" + v, "", nil, 405, "Method Xxxx"},
		{"integer query parameter", "GET", "/api/hubs/chat/groups/g/connections" + v + "&maxpagesize=" + digits, "",
			bearer("/api/hubs/chat/groups/g/connections" + v), 400, "Invalid maxpagesize"},
		{"continuationToken", "GET", "/api/hubs/chat/groups/g/connections" + v + "&continuationToken=" + strings.Repeat("!", 40000), "",
			bearer("/api/hubs/chat/groups/g/connections" + v), 400, "Invalid continuationToken"},
		{"Content-Type", "POST", "/api/hubs/chat/:send" + v, `{"target":"t","arguments":[]}`, []string{"Content-Type", "text/" + big}, 415, "Use application/json or application/octet-stream"},
		{"body field", "POST", "/api/hubs/chat/:execute" + v, `[{"type":"` + big + `"}]`, nil, 400, "Command 0: unknown type"},
		{"user id", "GET", "/api/hubs/chat/users/" + big + v, "", nil, 404, "User 'xxx"},
		{"connection id", "POST", "/api/hubs/chat/connections/" + big + "/:invoke" + v, `{"target":"t","arguments":[]}`, nil, 404, "Connection 'xxx"},
		{"group name", "GET", "/api/hubs/chat/groups/" + strings.Repeat("x", 1000) + v, "", nil, 404, "Group 'xxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.req(tt.method, tt.target, tt.body, tt.hdr...)
			if r.status != tt.status {
				t.Fatalf("%d %.300s, want %d", r.status, r.body, tt.status)
			}
			if len(r.body) > 1024 {
				t.Errorf("a 40 KB value got a %d-byte answer: %.300s…", len(r.body), r.body)
			}
			if !strings.Contains(r.body, tt.want) || !strings.Contains(r.body, "xxx…") && !strings.Contains(r.body, "999…") && !strings.Contains(r.body, "!!!…") {
				t.Errorf("answer %.300s does not say %q with the value cut short", r.body, tt.want)
			}
		})
	}
}
