package webpubsub

import (
	"strings"
	"testing"
)

// TestHugeInputAnswerIsSmall: a value of 40 KB in any position an error
// answer quotes (path, method, path segment, query parameter, header) gets an
// answer of under 1 KiB that still says what is wrong; the value used to be
// echoed whole. (The body's only echoed field, filter, is
// TestHugeBadFilterAnswerIsSmall's.)
func TestHugeInputAnswerIsSmall(t *testing.T) {
	big := strings.Repeat("x", 40000)
	digits := strings.Repeat("9", 40000)
	e := newEnv(t, envOptions{maxBody: 1 << 20})
	pathToken := func(path string) string { return e.token(e.srv.URL + path) }
	tests := []struct {
		name   string
		rq     request
		status int
		want   string
	}{
		{"path", request{method: "GET", target: "/api/" + big, token: "-"}, 404, "No operation matches GET /api/xxx"},
		{"method", request{method: "X" + big, target: "/api/hubs/chat/:send", token: "-"}, 405, "Method Xxxx"},
		{"integer query parameter", request{method: "POST", target: "/api/hubs/chat/:generateToken?minutesToExpire=" + digits,
			token: pathToken("/api/hubs/chat/:generateToken")}, 400, "Invalid minutesToExpire"},
		{"clientType", request{method: "POST", target: "/api/hubs/chat/:generateToken?clientType=" + big,
			token: pathToken("/api/hubs/chat/:generateToken")}, 400, "Invalid clientType"},
		{"Content-Type", request{method: "POST", target: "/api/hubs/chat/:send", contentType: "text/" + big, body: "hi"}, 415, "Content-Type"},
		{"permission", request{method: "PUT", target: "/api/hubs/chat/permissions/" + big + "/connections/c1"}, 400, "Invalid permission `xxx"},
		{"connection id", request{method: "PUT", target: "/api/hubs/chat/permissions/sendToGroup/connections/" + big}, 404, "Connection `xxx"},
		{"connection id (core)", request{method: "PUT", target: "/api/hubs/chat/groups/g/connections/" + big}, 404, "Connection `xxx"},
		{"after", request{method: "GET", target: "/api/hubs/chat/groups/g/messages?after=" + big,
			token: pathToken("/api/hubs/chat/groups/g/messages")}, 400, "Invalid after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(tt.rq)
			if res.status != tt.status {
				t.Fatalf("%d %.300s, want %d", res.status, res.body, tt.status)
			}
			if len(res.body) > 1024 {
				t.Errorf("a 40 KB value got a %d-byte answer: %.300s…", len(res.body), res.body)
			}
			if !strings.Contains(res.body, tt.want) || !strings.Contains(res.body, "xxx…") && !strings.Contains(res.body, "999…") {
				t.Errorf("answer %.300s does not say %q with the value cut short", res.body, tt.want)
			}
		})
	}
}
