package upstream

import (
	"strings"
	"testing"
	"time"
)

func TestSignalRUpstreamValidate(t *testing.T) {
	t.Parallel()
	const url = "https://app.example.com/runtime/webhooks/signalr?code=secret"
	tests := []struct {
		name string
		u    SignalRUpstream
		want string // substring of the error; "" = valid
	}{
		{"functions default", SignalRUpstream{URLTemplate: url}, ""},
		{"all placeholders", SignalRUpstream{URLTemplate: "http://h:7071/{hub}/api/{category}/{event}?e={event}",
			HubPattern: "*", CategoryPattern: "*", EventPattern: "*", AuthHeader: "Bearer t", Timeout: time.Second}, ""},
		{"lists", SignalRUpstream{URLTemplate: url, HubPattern: " chat , news", CategoryPattern: "connections,messages",
			EventPattern: "connected, broadcast,*"}, ""},
		{"category case", SignalRUpstream{URLTemplate: url, CategoryPattern: "Messages"}, ""},
		{"empty url", SignalRUpstream{}, "urlTemplate: empty"},
		{"web pubsub-only placeholder", SignalRUpstream{URLTemplate: "https://h/{Hub}"}, "unknown placeholder {Hub} (only {hub}, {category} and {event})"},
		{"unknown placeholder", SignalRUpstream{URLTemplate: "https://h/{user}"}, "unknown placeholder {user}"},
		{"unclosed", SignalRUpstream{URLTemplate: "https://h/{hub"}, "unclosed"},
		{"placeholder in host", SignalRUpstream{URLTemplate: "https://{hub}.example.com/x"}, "not allowed in the host"},
		{"placeholder in port", SignalRUpstream{URLTemplate: "https://h:{category}/x"}, "not allowed in the host"},
		{"scheme", SignalRUpstream{URLTemplate: "ftp://h/{event}"}, "scheme must be http or https"},
		{"relative", SignalRUpstream{URLTemplate: "/api/{event}"}, "scheme must be http or https"},
		{"no host", SignalRUpstream{URLTemplate: "http:///x"}, "no host"},
		{"empty list item", SignalRUpstream{URLTemplate: url, HubPattern: "a,,b"}, `hubPattern "a,,b": empty item`},
		{"trailing comma", SignalRUpstream{URLTemplate: url, EventPattern: "send,"}, `eventPattern "send,": empty item`},
		{"control character", SignalRUpstream{URLTemplate: url, EventPattern: "a\nb"}, "control character"},
		{"unknown category", SignalRUpstream{URLTemplate: url, CategoryPattern: "messages, connection"}, `"connection" is not one of connections, messages`},
		{"auth header", SignalRUpstream{URLTemplate: url, AuthHeader: "Bearer a\r\nX: y"}, "auth header"},
		{"negative timeout", SignalRUpstream{URLTemplate: url, Timeout: -time.Second}, "timeout: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.u.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// Every problem is reported, not just the first.
	err := SignalRUpstream{URLTemplate: "ftp://h", HubPattern: ",", Timeout: -1}.Validate()
	for _, want := range []string{"scheme", "hubPattern", "timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestSignalRMatchPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"", "anything", true},
		{"  ", "anything", true},
		{"*", "anything", true},
		{" * ", "anything", true},
		{"chat", "chat", true},
		{"chat", "Chat", true}, // hub and method names are case-insensitive in SignalR
		{"chat", "chat2", false},
		{"chat", "cha", false},
		{"chat", "", false},
		{"a,b,c", "b", true},
		{"a, b ,c", "b", true},
		{"a,b,c", "d", false},
		{"a,b,c", "a,b", false},
		{"a,*", "z", true},
		{"a,,b", "", false}, // an empty item matches nothing
		{"connections", "messages", false},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pattern, tt.value); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

func TestSignalRExpand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl, hub, category, event string
		want                       string
	}{
		{"http://h/runtime/webhooks/signalr", "chat", "messages", "send", "http://h/runtime/webhooks/signalr"},
		{"http://h/{hub}/api/{category}/{event}", "chat", "connections", "connected", "http://h/chat/api/connections/connected"},
		{"http://h/{event}/{event}", "c", "messages", "x", "http://h/x/x"},
		// Values are escaped as URI data: nothing but unreserved characters survives.
		{"http://h/{hub}/{event}?e={event}", "chat", "messages", "a b/c?d&e=f#g%+é~._-",
			"http://h/chat/a%20b%2Fc%3Fd%26e%3Df%23g%25%2B%C3%A9~._-?e=a%20b%2Fc%3Fd%26e%3Df%23g%25%2B%C3%A9~._-"},
		{"http://h/{event}", "chat", "messages", "{hub}", "http://h/%7Bhub%7D"}, // no second expansion
	}
	for _, tt := range tests {
		if got := expandSignalR(tt.tmpl, tt.hub, tt.category, tt.event); got != tt.want {
			t.Errorf("expandSignalR(%q, %q, %q, %q) = %q, want %q", tt.tmpl, tt.hub, tt.category, tt.event, got, tt.want)
		}
	}
}

func TestClientQuery(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"?", ""},
		{"?hub=chat&foo=bar", "?hub=chat&foo=bar"},
		{"hub=chat", "?hub=chat"},
		{"?hub=chat&id=abc&access_token=eyJ.x.y&foo=a%20b", "?hub=chat&foo=a%20b"},
		{"?access_token=t", ""},
		{"?access%5Ftoken=t&x=1", "?x=1"},
		{"?%69d=t", ""},
		{"?id=1&access%5Ftoken=t", ""}, // escaped names are still those parameters
		{"?hubid=1&idx=2&my_access_token=3&&flag", "?hubid=1&idx=2&my_access_token=3&&flag"},
	}
	for _, tt := range tests {
		if got := clientQuery(tt.in); got != tt.want {
			t.Errorf("clientQuery(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapeDataString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"Broadcast_1.x-y~z", "Broadcast_1.x-y~z"},
		{" ", "%20"},
		{"a+b", "a%2Bb"},
		{"ü", "%C3%BC"},
		{"\x00\xff", "%00%FF"},
		{"!*'();:@&=$,/?#[]", "%21%2A%27%28%29%3B%3A%40%26%3D%24%2C%2F%3F%23%5B%5D"},
	}
	for _, tt := range tests {
		if got := escapeDataString(tt.in); got != tt.want {
			t.Errorf("escapeDataString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkSignalRMatch(b *testing.B) {
	ups := []SignalRUpstream{
		{URLTemplate: "http://h/a", HubPattern: "admin", EventPattern: "*"},
		{URLTemplate: "http://h/b", HubPattern: "chat, news", CategoryPattern: "messages", EventPattern: "broadcast, echo, join"},
		{URLTemplate: "http://h/c"},
	}
	c := &SignalRClient{upstreams: func(string) []SignalRUpstream { return ups }}
	b.ReportAllocs()
	for b.Loop() {
		if !c.HasUpstream("news", CategoryMessages, "Join") {
			b.Fatal("no match")
		}
	}
}
