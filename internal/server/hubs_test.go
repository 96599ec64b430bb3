package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestRefusedRequestsMakeNoHub: client requests that are refused (no
// upgrade, no token) on both listeners, and REST calls that can answer
// without a hub, make none. On main every one of them made its hub.
func TestRefusedRequestsMakeNoHub(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	wps, sr := strings.TrimRight(srv.Endpoint(), "/"), strings.TrimRight(srv.SignalREndpoint(), "/")
	for i := range 100 {
		for _, rq := range []struct{ method, url string }{
			{http.MethodGet, fmt.Sprintf("%s/client/hubs/plain%d", wps, i)},
			{http.MethodGet, fmt.Sprintf("%s/client/?hub=query%d", wps, i)},
			{http.MethodPost, fmt.Sprintf("%s/client/negotiate?hub=neg%d", sr, i)},
		} {
			req, _ := http.NewRequest(rq.method, rq.url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s %s: %d, want 400 or 401", rq.method, rq.url, resp.StatusCode)
			}
		}
	}
	// Authenticated REST calls that answer as for an empty hub.
	for _, rq := range []struct {
		method, path string
		status       int
	}{
		{http.MethodHead, "/api/hubs/ghost/connections/c1?api-version=2024-12-01", http.StatusNotFound},
		{http.MethodHead, "/api/hubs/ghost/groups/g?api-version=2024-12-01", http.StatusNotFound},
		{http.MethodHead, "/api/hubs/ghost/users/u?api-version=2024-12-01", http.StatusNotFound},
		{http.MethodGet, "/api/hubs/ghost/groups/g/connections?api-version=2024-12-01", http.StatusOK},
		{http.MethodPost, "/api/hubs/ghost/:closeConnections?api-version=2024-12-01", http.StatusNoContent},
		{http.MethodDelete, "/api/hubs/ghost/users/u/groups?api-version=2024-12-01", http.StatusNoContent},
		{http.MethodPost, "/api/hubs/ghost/:send?api-version=2024-12-01", http.StatusAccepted},
	} {
		body := ""
		if rq.method == http.MethodPost && strings.Contains(rq.path, ":send") {
			body = `{"x":1}`
		}
		if resp, b := restDo(t, srv, rq.method, wps+rq.path, body); resp.StatusCode != rq.status {
			t.Fatalf("%s %s: %d %s, want %d", rq.method, rq.path, resp.StatusCode, b, rq.status)
		}
	}
	if hubs := srv.Node().Hubs(); len(hubs) != 0 {
		t.Fatalf("refused requests and lookups made %d hubs", len(hubs))
	}
}

// TestHistoryContinuesAfterHubReclaim: the group streams of history are
// kept by the history log, keyed by hub name; a reclaimed hub loses neither
// offsets nor epoch, and the next hub of the name continues the stream.
func TestHistoryContinuesAfterHubReclaim(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte("hubs:\n  chat:\n    history:\n      - pattern: \"room:*\"\n        max_messages: 100\n        max_age: 1h\n"), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfgFile, Settings: []string{"limits.hub_idle_timeout=1ms"}})
	wps := strings.TrimRight(srv.Endpoint(), "/")
	send := wps + "/api/hubs/chat/groups/room:1/:send?api-version=2024-12-01"
	reclaimed := func() {
		t.Helper()
		eventually.Nil(t, 10*time.Second, func() error {
			if hubs := srv.Node().Hubs(); len(hubs) != 0 {
				return fmt.Errorf("hub never reclaimed: %v", hubs)
			}
			return nil
		})
	}
	if status, off, _ := sendOnce(t, srv, send, `{"n":1}`, ""); status != http.StatusAccepted || off != "1" {
		t.Fatalf("first send: %d offset %q", status, off)
	}
	first := catchUp(t, srv, wps+"/api/hubs/chat/groups/room:1/messages?api-version=2024-12-01")
	reclaimed()
	if status, off, _ := sendOnce(t, srv, send, `{"n":2}`, ""); status != http.StatusAccepted || off != "2" {
		t.Fatalf("send after the reclaim: %d offset %q, want offset 2", status, off)
	}
	reclaimed()
	page := catchUp(t, srv, wps+"/api/hubs/chat/groups/room:1/messages?api-version=2024-12-01")
	if page.Epoch == "" || page.Epoch != first.Epoch || len(page.Messages) != 2 || page.Messages[1].Offset != 2 {
		t.Fatalf("stream after reclaims: epoch %q (was %q), %d messages %+v", page.Epoch, first.Epoch, len(page.Messages), page.Messages)
	}
}

// metricsWith returns the /metrics lines that carry label.
func metricsWith(t *testing.T, srv *servertest.Server, label string) []string {
	t.Helper()
	resp, err := http.Get(strings.TrimRight(srv.Endpoint(), "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, label) {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestReclaimedHubLeavesNoMetricSeries: a Web PubSub and a SignalR client
// of hub "metered" connect, send, and leave; once the hubs are reclaimed no
// series with hub="metered" remains (core's, the dialect's). On main they
// stayed for the life of the process.
func TestReclaimedHubLeavesNoMetricSeries(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"limits.hub_idle_timeout=1ms"}})
	const label = `hub="metered"`

	tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(srv.Endpoint(), "metered"), auth.MintOptions{})
	u := strings.Replace(strings.TrimRight(srv.Endpoint(), "/"), "http", "ws", 1) + "/client/hubs/metered?access_token=" + url.QueryEscape(tok)
	conn, _, _, err := ws.Dialer{Protocols: []string{"json.webpubsub.azure.v1"}, Timeout: 5 * time.Second}.Dial(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	wsutil.WriteClientText(conn, []byte(`{"type":"joinGroup","group":"g","ackId":1}`))
	sr := dialHub(t, srv, "metered", hubproto.JSON)
	if resp := restCall(t, srv, http.MethodPost, strings.TrimRight(srv.Endpoint(), "/")+"/api/hubs/metered/:send?api-version=2024-12-01", `{"x":1}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	joined := func() bool { // the joinGroup was counted
		for _, l := range metricsWith(t, srv, label) {
			if strings.HasPrefix(l, "switchboard_message_bytes_in_total{") {
				return true
			}
		}
		return false
	}
	eventually.True(t, "the joinGroup to be counted", 10*time.Second, joined)
	if got := metricsWith(t, srv, label); len(got) < 5 {
		t.Fatalf("series of a hub in use: %q, want connections, messages in and out, sends…", got)
	}
	conn.Close()
	sr.ws.Close()
	eventually.Nil(t, 10*time.Second, func() error {
		if got := metricsWith(t, srv, label); len(got) != 0 {
			return fmt.Errorf("series left by reclaimed hubs: %q", got)
		}
		return nil
	})
	if hubs := srv.Node().Hubs(); len(hubs) != 0 {
		t.Fatalf("hub not reclaimed: %v", hubs)
	}
}

// TestHubLimit: with limits.max_hubs=1 a Web PubSub client of a second hub
// gets 503 before the upgrade, naming the limit; clients of the hub in use
// still connect.
func TestHubLimit(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"limits.max_hubs=1"}})
	wps := strings.TrimRight(srv.Endpoint(), "/")
	handshake := func(hub string) (int, string) {
		t.Helper()
		tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(srv.Endpoint(), hub), auth.MintOptions{})
		u := strings.Replace(wps, "http", "ws", 1) + "/client/hubs/" + hub + "?access_token=" + url.QueryEscape(tok)
		conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), u)
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return http.StatusSwitchingProtocols, ""
		}
		var status ws.StatusError
		if !errorsAs(err, &status) {
			t.Fatalf("dial %s: %v", hub, err)
		}
		return int(status), err.Error()
	}
	if status, _ := handshake("one"); status != http.StatusSwitchingProtocols {
		t.Fatalf("first hub: %d", status)
	}
	if status, _ := handshake("two"); status != http.StatusServiceUnavailable {
		t.Fatalf("second hub at max_hubs=1: %d, want 503", status)
	}
	// What the refused client reads.
	tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(srv.Endpoint(), "two"), auth.MintOptions{})
	req, _ := http.NewRequest(http.MethodGet, wps+"/client/hubs/two?access_token="+url.QueryEscape(tok), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "limits.max_hubs") {
		t.Fatalf("refused handshake: %d %q", resp.StatusCode, body)
	}
	if status, _ := handshake("ONE"); status != http.StatusSwitchingProtocols {
		t.Fatalf("hub in use refused at the limit: %d", status)
	}

	// SignalR: the handshake of a client of a second hub is answered with
	// an error naming the limit.
	dialHub(t, srv, "one", hubproto.JSON)
	sr := srv.SignalREndpoint()
	stok, _ := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, "two"), "u1", time.Minute)
	sock, br, _, err := ws.Dial(context.Background(), strings.Replace(sr, "http", "ws", 1)+"/client/?hub=two&access_token="+stok)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	var rd io.Reader = sock
	if br != nil {
		rd = io.MultiReader(br, sock)
	}
	wsutil.WriteClientText(sock, []byte(`{"protocol":"json","version":1}`+"\x1e"))
	sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, _, err := wsutil.ReadServerData(struct {
		io.Reader
		io.Writer
	}{rd, sock})
	if err != nil || !strings.Contains(string(answer), "limits.max_hubs") {
		t.Fatalf("SignalR handshake at the limit: %q, %v", answer, err)
	}
	t.Logf("SignalR handshake answer: %q", answer)
}
