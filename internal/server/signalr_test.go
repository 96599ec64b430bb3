package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// restCall makes a REST call with a server token whose aud is the URL.
func restCall(t *testing.T, srv *servertest.Server, method, url, body string) *http.Response {
	t.Helper()
	tok, err := srv.Keys().MintServerToken(url, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestSignalRGroupHistory: a SignalR group that keeps history gets its own
// stream (apart from the Web PubSub hub of the same name), and its messages
// carry their offset and epoch in the invocation headers.
func TestSignalRGroupHistory(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte("hubs:\n  chat:\n    history:\n      - pattern: \"room:*\"\n        max_messages: 100\n        max_age: 1h\n"), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfgFile})
	wps, sr := strings.TrimRight(srv.Endpoint(), "/"), srv.SignalREndpoint()

	// One message in the Web PubSub stream of chat/room:1 first.
	if resp := restCall(t, srv, http.MethodPost, wps+"/api/hubs/chat/groups/room:1/:send?api-version=2024-01-01", `{"x":1}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("web pubsub send: %d", resp.StatusCode)
	}

	// A SignalR client: negotiate, WebSocket, handshake.
	tok, err := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, "chat"), "u1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, sr+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var neg struct{ ConnectionID, ConnectionToken string }
	json.NewDecoder(resp.Body).Decode(&neg)
	resp.Body.Close()
	wsURL := strings.Replace(sr, "http", "ws", 1) + "/client/?hub=chat&id=" + neg.ConnectionToken + "&access_token=" + tok
	conn, br, _, err := ws.Dial(context.Background(), wsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	read := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			p, err := wsutil.ReadServerText(rw)
			if err != nil {
				t.Fatal(err)
			}
			if s := string(p); s != "{\"type\":6}\x1e" {
				return s
			}
		}
	}
	if err := wsutil.WriteClientText(conn, []byte("{\"protocol\":\"json\",\"version\":1}\x1e")); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "{}\x1e" {
		t.Fatalf("handshake answer %q", got)
	}

	if resp := restCall(t, srv, http.MethodPut, sr+"/api/hubs/chat/groups/room:1/connections/"+neg.ConnectionID+"?api-version=2022-06-01", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("add to group: %d", resp.StatusCode)
	}
	for _, text := range []string{"a", "b"} {
		resp := restCall(t, srv, http.MethodPost, sr+"/api/hubs/chat/groups/room:1/:send?api-version=2022-06-01", `{"target":"t","arguments":["`+text+`"]}`)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("signalr send: %d", resp.StatusCode)
		}
	}
	var epoch string
	for i, text := range []string{"a", "b"} {
		var m struct {
			Type      int
			Target    string
			Arguments []string
			Headers   map[string]string
		}
		got := read()
		if err := json.Unmarshal(bytes.TrimSuffix([]byte(got), []byte{0x1e}), &m); err != nil {
			t.Fatalf("frame %q: %v", got, err)
		}
		wantOffset := []string{"1", "2"}[i] // its own stream: the Web PubSub message is not counted
		if m.Type != 1 || m.Target != "t" || len(m.Arguments) != 1 || m.Arguments[0] != text || m.Headers["offset"] != wantOffset || m.Headers["epoch"] == "" {
			t.Fatalf("message %d = %q", i, got)
		}
		if epoch != "" && m.Headers["epoch"] != epoch {
			t.Fatalf("epoch changed within a stream: %q then %q", epoch, m.Headers["epoch"])
		}
		epoch = m.Headers["epoch"]
	}
}
