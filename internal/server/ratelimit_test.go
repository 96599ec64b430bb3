package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// upgrade sends a WebSocket upgrade request to u (not followed through)
// with the given X-Forwarded-For, and returns the status.
func upgrade(t *testing.T, u, forwardedFor string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%s: 429 without Retry-After", u)
	}
	return resp.StatusCode
}

// The server wires one per-IP table into both listeners (the Web PubSub
// front door and the SignalR endpoint), and the forwarding header is
// believed from a trusted proxy only.
func TestRateLimitsWired(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{
		"limits.ip_max_connections=1", "limits.trusted_proxy_header=X-Forwarded-For", "limits.trusted_proxies=127.0.0.0/8",
	}})
	wps := strings.TrimRight(srv.Endpoint(), "/")
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(wps, "chat"), auth.MintOptions{UserID: "u"})
	if err != nil {
		t.Fatal(err)
	}
	d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"X-Forwarded-For": {"203.0.113.1"}})}
	conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(wps, "http")+"/client/hubs/chat?access_token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	if got := upgrade(t, wps+"/client/hubs/chat", "203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("second connection of 203.0.113.1 (front door): %d, want 429", got)
	}
	if got := upgrade(t, wps+"/client/?hub=chat", "203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("second connection of 203.0.113.1 (/client/?hub=): %d, want 429", got)
	}
	if got := upgrade(t, srv.SignalREndpoint()+"/client/?hub=chat", "203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("second connection of 203.0.113.1 on the SignalR listener: %d, want 429", got)
	}
	if got := upgrade(t, wps+"/client/hubs/chat", "203.0.113.2"); got != http.StatusUnauthorized {
		t.Fatalf("another client behind the proxy: %d, want 401 (admitted, no token)", got)
	}
	if got := upgrade(t, wps+"/client/hubs/chat", "6.6.6.6, 203.0.113.1"); got != http.StatusTooManyRequests {
		t.Fatalf("a client naming another address on the left of its proxy's: %d, want 429", got)
	}
}

// A forwarding header from a peer that is not a trusted proxy is ignored:
// the peer's own address is counted.
func TestRateLimitsIgnoreUntrustedHeader(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{
		"limits.ip_handshake_rate=0.001", "limits.ip_handshake_burst=2",
		"limits.trusted_proxy_header=X-Forwarded-For", "limits.trusted_proxies=192.0.2.0/24",
	}})
	wps := strings.TrimRight(srv.Endpoint(), "/")
	for i, xff := range []string{"203.0.113.1", "203.0.113.2"} {
		if got := upgrade(t, wps+"/client/hubs/chat", xff); got != http.StatusUnauthorized {
			t.Fatalf("attempt %d within the burst: %d, want 401", i+1, got)
		}
	}
	if got := upgrade(t, wps+"/client/hubs/chat", "203.0.113.3"); got != http.StatusTooManyRequests {
		t.Fatalf("third attempt from one untrusted peer under a new forwarded address: %d, want 429", got)
	}
}
