package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestFailedPathsGiveTheirCountsBack cycles, on both listeners, every way a connection
// attempt can fail after the admission gate (limits.max_connections) and the per-IP slot
// (limits.ip_max_connections) counted it: refused tokens, a request that is not an
// upgrade, a WebSocket upgrade that fails, a reliable resume refused after the upgrade,
// a negotiate without a transport, a long-polling connection deleted. A count that one of
// them kept would lock every client out: afterwards both counts are back to zero, and a
// client connects on each listener.
func TestFailedPathsGiveTheirCountsBack(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{
		"limits.ip_max_connections=1", "limits.max_connections=2",
	}})
	wps := strings.TrimRight(srv.Endpoint(), "/")
	sr := srv.SignalREndpoint()
	tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(wps, "chat"), auth.MintOptions{UserID: "u"})
	srTok, _ := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, "chat"), "u", time.Minute)
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, u, bearer string, h map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	upgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
	badUpgrade := map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "12"}
	negotiate := func() string {
		t.Helper()
		status, body := do(http.MethodPost, sr+"/client/negotiate?hub=chat&negotiateVersion=1", srTok, nil)
		var n struct{ ConnectionToken string }
		if status != http.StatusOK || json.Unmarshal([]byte(body), &n) != nil {
			t.Fatalf("negotiate: %d %s", status, body)
		}
		return n.ConnectionToken
	}
	gauge := func(name string) string {
		_, body := do(http.MethodGet, wps+"/metrics", "", nil)
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in /metrics", name)
		}
		return m[1]
	}
	for range 10 {
		do(http.MethodGet, wps+"/client/hubs/chat", "", upgrade)                      // no token: 401
		do(http.MethodGet, wps+"/client/hubs/chat?access_token=bad", "", upgrade)     // bad token: 401
		do(http.MethodGet, wps+"/client/hubs/chat?access_token="+tok, "", nil)        // not an upgrade: 400
		do(http.MethodGet, wps+"/client/?hub=chat&access_token="+tok, "", badUpgrade) // the upgrade fails
		do(http.MethodGet, wps+"/client/hubs/chat?access_token="+tok, "", badUpgrade) // the upgrade fails (front door)
		d := ws.Dialer{Timeout: 5 * time.Second, Protocols: []string{"json.reliable.webpubsub.azure.v1"}}
		if c, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(wps, "http")+
			"/client/hubs/chat?awps_connection_id=gone&awps_reconnection_token=bad&access_token="+tok); err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c) // closed with 1008 by the server
			c.Close()
		}
		do(http.MethodGet, sr+"/client/?hub=chat", "", upgrade)                                                             // skipNegotiation, no token
		do(http.MethodGet, sr+"/client/?hub=chat&id="+negotiate(), "bad", upgrade)                                          // bad token
		do(http.MethodGet, sr+"/client/?hub=chat&id="+negotiate(), srTok, badUpgrade)                                       // the upgrade fails
		do(http.MethodGet, sr+"/client/?hub=chat&id="+negotiate(), "bad", map[string]string{"Accept": "text/event-stream"}) // SSE, bad token
		// A failed upgrade and a refused resume answer on the hijacked connection, which
		// the client may read before their handler has returned and given its place back:
		// wait for that before the long poll, which needs the place.
		eventually.True(t, "the places of the hijacked answers back", 30*time.Second, func() bool {
			return gauge("switchboard_ratelimit_tracked_ips") == "0"
		})
		id := negotiate()
		u := sr + "/client/?hub=chat&id=" + id
		if status, body := do(http.MethodGet, u, srTok, nil); status != http.StatusOK { // the first poll opens it
			t.Fatalf("first poll: %d %s", status, body)
		}
		if status, body := do(http.MethodDelete, u, srTok, nil); status != http.StatusAccepted {
			t.Fatalf("DELETE: %d %s", status, body)
		}
		// The long-polling conn ends (and gives its place back) just after the DELETE's answer.
		eventually.True(t, "the long-polling conn's place back", 30*time.Second, func() bool {
			return gauge("switchboard_ratelimit_tracked_ips") == "0"
		})
	}
	eventually.True(t, "the counts back to zero", 30*time.Second, func() bool {
		return gauge("switchboard_admission_connections") == "0" && gauge("switchboard_ratelimit_tracked_ips") == "0"
	})
	if c, _, _, err := (&ws.Dialer{Timeout: 5 * time.Second}).Dial(context.Background(), "ws"+strings.TrimPrefix(wps, "http")+"/client/hubs/chat?access_token="+tok); err != nil {
		t.Fatalf("a client after the cycles: %v", err)
	} else {
		c.Close()
	}
}
