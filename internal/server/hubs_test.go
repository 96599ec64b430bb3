package server_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		deadline := time.Now().Add(10 * time.Second)
		for len(srv.Node().Hubs()) != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if hubs := srv.Node().Hubs(); len(hubs) != 0 {
			t.Fatalf("hub never reclaimed: %v", hubs)
		}
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
