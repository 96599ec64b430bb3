package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// restCall makes a REST call with a server token whose aud is the URL.
func restCall(t *testing.T, srv *servertest.Server, method, url, body string) *http.Response {
	t.Helper()
	resp, _ := restDo(t, srv, method, url, body)
	return resp
}

// restDo makes a REST call with a server token whose aud is the URL, a JSON body when body is
// not "", and the headers of header (name, value pairs); it returns the answer and its body.
func restDo(t *testing.T, srv *servertest.Server, method, url, body string, header ...string) (*http.Response, []byte) {
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
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
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
	c := dialHub(t, srv, "chat", hubproto.JSON)

	if resp := restCall(t, srv, http.MethodPut, sr+"/api/hubs/chat/groups/room:1/connections/"+c.id+"?api-version=2022-06-01", ""); resp.StatusCode != http.StatusOK {
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
		got := string(c.next().Raw)
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

// sendOnce posts a JSON invocation to url with an Idempotency-Key (none when key is ""), and
// returns the answer's status, offset and whether it was replayed.
func sendOnce(t *testing.T, srv *servertest.Server, url, body, key string) (status int, offset string, replayed bool) {
	t.Helper()
	var header []string
	if key != "" {
		header = []string{"Idempotency-Key", key}
	}
	resp, _ := restDo(t, srv, http.MethodPost, url, body, header...)
	return resp.StatusCode, resp.Header.Get("X-Switchboard-Offset"), resp.Header.Get("Idempotent-Replayed") == "true"
}

// catchUp reads one page of a group's history at url.
func catchUp(t *testing.T, srv *servertest.Server, url string) (page struct {
	Epoch    string
	Offset   uint64
	Messages []struct {
		Offset    uint64
		Target    string
		Arguments []string
	}
	NextLink *string
}) {
	t.Helper()
	resp, b := restDo(t, srv, http.MethodGet, url, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
	return page
}

// TestSignalRIdempotentSendAndCatchUp: on the SignalR listener a send retried with its
// Idempotency-Key is answered from the first (also after a restart), a Web PubSub send with the
// same key does not count, and the catch-up read pages through the SignalR stream only.
func TestSignalRIdempotentSendAndCatchUp(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte("hubs:\n  chat:\n    history:\n      - pattern: \"room:*\"\n        max_messages: 100\n        max_age: 1h\n"), 0o600)
	dataDir := t.TempDir()
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfgFile, Settings: []string{"server.data_dir=" + dataDir}})
	wps, sr := strings.TrimRight(srv.Endpoint(), "/"), srv.SignalREndpoint()

	if status, off, _ := sendOnce(t, srv, wps+"/api/hubs/chat/groups/room:1/:send?api-version=2024-12-01", `{"x":1}`, "k1"); status != http.StatusAccepted || off != "1" {
		t.Fatalf("web pubsub send: %d offset %q", status, off)
	}
	tests := []struct {
		name, path, body, key string
		offset                string
		replayed              bool
	}{
		{"first with a key the Web PubSub API used", "/api/v1/hubs/chat/groups/room:1", `{"target":"t","arguments":["a"]}`, "k1", "1", false},
		{"retry", "/api/v1/hubs/chat/groups/room:1", `{"target":"t","arguments":["a"]}`, "k1", "1", true},
		{"retry on the 2022-06-01 route", "/api/hubs/chat/groups/room:1/:send?api-version=2022-06-01", `{"target":"t","arguments":["a"]}`, "k1", "1", true},
		{"another send", "/api/hubs/chat/groups/room:1/:send", `{"target":"t","arguments":["b"]}`, "", "2", false},
	}
	for _, tt := range tests {
		status, off, replayed := sendOnce(t, srv, sr+tt.path, tt.body, tt.key)
		if status != http.StatusAccepted || off != tt.offset || replayed != tt.replayed {
			t.Fatalf("%s: %d offset %q replayed %v, want 202 %q %v", tt.name, status, off, replayed, tt.offset, tt.replayed)
		}
	}

	// The catch-up read, one message a page.
	var got []string
	url := sr + "/api/hubs/chat/groups/room:1/messages?limit=1&api-version=2022-06-01"
	for pages := 0; url != "" && pages < 5; pages++ {
		p := catchUp(t, srv, url)
		for _, m := range p.Messages {
			got = append(got, m.Target+":"+strings.Join(m.Arguments, ","))
		}
		url = ""
		if p.NextLink != nil {
			url = *p.NextLink
		}
	}
	if strings.Join(got, " ") != "t:a t:b" {
		t.Errorf("SignalR catch-up read %q, want t:a t:b", got)
	}

	// After a restart on the same data directory the key is still known.
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv = servertest.Start(t, servertest.Options{ConfigFile: cfgFile, Settings: []string{"server.data_dir=" + dataDir}})
	status, off, replayed := sendOnce(t, srv, srv.SignalREndpoint()+"/api/v1/hubs/chat/groups/room:1", `{"target":"t","arguments":["a"]}`, "k1")
	if status != http.StatusAccepted || off != "1" || !replayed {
		t.Errorf("retry after a restart: %d offset %q replayed %v, want 202 1 true", status, off, replayed)
	}
	if p := catchUp(t, srv, srv.SignalREndpoint()+"/api/v1/hubs/chat/groups/room:1/messages"); p.Offset != 2 || len(p.Messages) != 2 {
		t.Errorf("after the restart the stream ends at %d with %d messages, want 2 and 2", p.Offset, len(p.Messages))
	}
}
