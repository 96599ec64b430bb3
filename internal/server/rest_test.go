package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// historyConfig is a config file whose chat groups room:* keep history.
func historyConfig(t *testing.T) string {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("hubs:\n  chat:\n    history:\n      - pattern: \"room:*\"\n        max_messages: 100\n        max_age: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// nextLink sends two messages to chat/room:1 at base and reads the first of them: it returns
// the page's nextLink, "" when there is none.
func nextLink(t *testing.T, srv *servertest.Server, base, sendBody string, header ...string) string {
	t.Helper()
	for range 2 {
		if resp, b := restDo(t, srv, http.MethodPost, base+"/api/hubs/chat/groups/room:1/:send", sendBody); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send: %d %s", resp.StatusCode, b)
		}
	}
	resp, b := restDo(t, srv, http.MethodGet, base+"/api/hubs/chat/groups/room:1/messages?limit=1", "", header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("catch-up read: %d %s", resp.StatusCode, b)
	}
	var page struct{ NextLink *string }
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("catch-up read: %v in %s", err, b)
	}
	if page.NextLink == nil {
		return ""
	}
	return *page.NextLink
}

// TestNextLinkUsesPublicEndpoint: behind a TLS terminator that sends no forwarding headers, a
// Web PubSub page's nextLink names server.public_endpoint, not the plain-HTTP address the
// request reached; a configured endpoint also wins over forwarding headers. (Before the two
// APIs shared rest.BaseURL, the Web PubSub API ignored server.public_endpoint and linked to
// http://127.0.0.1:<port>.)
func TestNextLinkUsesPublicEndpoint(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{ConfigFile: historyConfig(t),
		Settings: []string{"server.public_endpoint=https://wps.example.com/"}})
	direct := "http://" + srv.Addr().String()
	want := "https://wps.example.com/api/hubs/chat/groups/room:1/messages?"

	if got := nextLink(t, srv, direct, `{"x":1}`); !strings.HasPrefix(got, want) {
		t.Errorf("no forwarding headers: nextLink %q, want it on %q", got, want)
	}
	if got := nextLink(t, srv, direct, `{"x":1}`, "X-Forwarded-Proto", "http", "X-Forwarded-Host", "proxy.internal"); !strings.HasPrefix(got, want) {
		t.Errorf("forwarding headers: nextLink %q, want it on %q", got, want)
	}
}

// TestSignalRNextLinkHonoursForwardingHeaders: without signalr.public_endpoint, the SignalR
// API's nextLink names the scheme and host the client used, from the forwarding headers, as
// the Web PubSub API's does. (Before, it named the listener's bound address.)
func TestSignalRNextLinkHonoursForwardingHeaders(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{ConfigFile: historyConfig(t)})
	inv := `{"target":"t","arguments":["a"]}`
	for _, tt := range []struct {
		header []string
		want   string
	}{
		{[]string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "sr.example.com"}, "https://sr.example.com/api/hubs/chat/groups/room:1/messages?"},
		{[]string{"Forwarded", `for=192.0.2.1;proto=https;host="sr2.example.com:8443"`}, "https://sr2.example.com:8443/api/hubs/chat/groups/room:1/messages?"},
	} {
		if got := nextLink(t, srv, srv.SignalREndpoint(), inv, tt.header...); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%q: nextLink %q, want it on %q", tt.header, got, tt.want)
		}
	}
}
