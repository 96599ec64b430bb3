package upstream

import (
	"strings"
	"testing"
	"time"
)

func TestHandlerValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    Handler
		want string // substring of the error; "" for valid
	}{
		{"full", Handler{URLTemplate: "https://h.example.com/api/{hub}/{event}?code=s", UserEvents: []string{"*"},
			SystemEvents: []string{"connect", "Connected", "DISCONNECTED"}, AuthHeader: "Bearer x", Timeout: time.Second}, ""},
		{"plain url", Handler{URLTemplate: "http://127.0.0.1:8080/events"}, ""},
		{"user list", Handler{URLTemplate: "http://h/x", UserEvents: []string{"chat, typing", "message"}}, ""},
		{"empty url", Handler{}, "urlTemplate: empty"},
		{"placeholder in host", Handler{URLTemplate: "https://{hub}.example.com/x"}, "not allowed in the host"},
		{"placeholder in port", Handler{URLTemplate: "https://h:{event}/x"}, "not allowed in the host"},
		{"unknown placeholder", Handler{URLTemplate: "https://h/{Hub}"}, "unknown placeholder {Hub}"},
		{"unclosed", Handler{URLTemplate: "https://h/{hub"}, "unclosed"},
		{"scheme", Handler{URLTemplate: "ftp://h/x"}, "scheme must be http or https"},
		{"no scheme", Handler{URLTemplate: "h/x"}, "scheme must be http or https"},
		{"no host", Handler{URLTemplate: "http:///x"}, "no host"},
		{"bad user event", Handler{URLTemplate: "http://h/x", UserEvents: []string{"1abc"}}, `"1abc" is neither`},
		{"empty user event", Handler{URLTemplate: "http://h/x", UserEvents: []string{"a,"}}, `"" is neither`},
		{"bad system event", Handler{URLTemplate: "http://h/x", SystemEvents: []string{"connecting"}}, `"connecting" is not one of`},
		{"auth header newline", Handler{URLTemplate: "http://h/x", AuthHeader: "Bearer a\r\nX: y"}, "control character"},
		{"negative timeout", Handler{URLTemplate: "http://h/x", Timeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := Handler{URLTemplate: "ftp://h", UserEvents: []string{"!"}, SystemEvents: []string{"x"}, Timeout: -1}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"scheme", `"!"`, `"x"`, "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	tests := []struct{ tmpl, hub, event, want string }{
		{"http://h/api/{hub}/{event}", "chat", "connect", "http://h/api/chat/connect"},
		{"http://h/{event}?hub={hub}&code=x", "a b", "my.ev", "http://h/my.ev?hub=a%20b&code=x"},
		{"http://h/{hub}", "a/b?c", "e", "http://h/a%2Fb%3Fc"},
		{"http://h/static", "chat", "connect", "http://h/static"},
	}
	for _, tt := range tests {
		if got := expand(tt.tmpl, tt.hub, tt.event); got != tt.want {
			t.Errorf("expand(%q, %q, %q) = %q, want %q", tt.tmpl, tt.hub, tt.event, got, tt.want)
		}
	}
}

func TestValidEventName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "message", "Chat.v2", "x_y-z", "a" + strings.Repeat("b", 127)} {
		if !ValidEventName(ok) {
			t.Errorf("ValidEventName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "1a", "_a", "a b", "a/b", "é", "a" + strings.Repeat("b", 128)} {
		if ValidEventName(bad) {
			t.Errorf("ValidEventName(%q) = true", bad)
		}
	}
}

func TestHandlerSelection(t *testing.T) {
	t.Parallel()
	first := Handler{URLTemplate: "http://first/{event}", UserEvents: []string{"Chat,typing"}, SystemEvents: []string{"Connect"}}
	second := Handler{URLTemplate: "http://second/{event}", UserEvents: []string{"*"}, SystemEvents: []string{"connect", "disconnected"}}
	byHub := map[string][]Handler{"chat": {first, second}, "nouser": {{URLTemplate: "http://x", SystemEvents: []string{"connected"}}}}
	c, _ := newClient(t, Config{Handlers: func(hub string) []Handler { return byHub[hub] }})

	sys := []struct {
		hub, event, want string
	}{
		{"chat", EventConnect, "http://first/{event}"},
		{"chat", EventDisconnected, "http://second/{event}"},
		{"chat", EventConnected, ""},
		{"nouser", EventConnected, "http://x"},
		{"other", EventConnect, ""},
	}
	for _, tt := range sys {
		h, ok := c.systemHandler(tt.hub, tt.event)
		if ok != (tt.want != "") || h.URLTemplate != tt.want {
			t.Errorf("systemHandler(%q, %q) = %q, %v; want %q", tt.hub, tt.event, h.URLTemplate, ok, tt.want)
		}
	}
	user := []struct {
		hub, event, want string
	}{
		{"chat", "chat", "http://first/{event}"},
		{"chat", "CHAT", "http://first/{event}"},
		{"chat", "typing", "http://first/{event}"},
		{"chat", "message", "http://second/{event}"},
		{"nouser", "message", ""},
		{"other", "message", ""},
	}
	for _, tt := range user {
		h, ok := c.userHandler(tt.hub, tt.event)
		if ok != (tt.want != "") || h.URLTemplate != tt.want {
			t.Errorf("userHandler(%q, %q) = %q, %v; want %q", tt.hub, tt.event, h.URLTemplate, ok, tt.want)
		}
		if got := c.HasUserHandler(tt.hub, tt.event); got != (tt.want != "") {
			t.Errorf("HasUserHandler(%q, %q) = %v", tt.hub, tt.event, got)
		}
	}
}

func TestNewConfigErrors(t *testing.T) {
	t.Parallel()
	keys := testKeys(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no keys", Config{Origin: "h"}, "Keys is required"},
		{"no origin", Config{Keys: keys}, "Origin is required"},
		{"bad origin", Config{Keys: keys, Origin: "a\nb"}, "control character"},
		{"negative limit", Config{Keys: keys, Origin: "h", QueueLimit: -1}, "must not be negative"},
		{"negative retry", Config{Keys: keys, Origin: "h", Retry: []time.Duration{-1}}, "negative"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New() = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	tests := []struct{ body, want string }{
		{"", ""},
		{"  Unauthorized user\n", "Unauthorized user"},
		{"line1\r\nline2", "line1  line2"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{strings.Repeat("é", 600), strings.Repeat("é", 512)},
	}
	for _, tt := range tests {
		if got := reason([]byte(tt.body)); got != tt.want {
			t.Errorf("reason(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}
