package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// hangingHandler is an event handler whose user events never answer: each
// request waits until its context ends, which it reports on ended, or until
// the test releases it.
type hangingHandler struct {
	started chan struct{} // a user event arrived
	ended   chan struct{} // a user event's request context ended
	release chan struct{} // closed when the test is over
}

func (h *hangingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	if !strings.HasPrefix(r.Header.Get("ce-type"), "azure.webpubsub.user.") {
		return
	}
	io.ReadAll(r.Body) // net/http notices a client that goes away only once the body is read
	h.started <- struct{}{}
	select {
	case <-r.Context().Done():
		h.ended <- struct{}{}
	case <-h.release:
	}
}

// TestUserEventCancelled: a user event waiting for a handler that hangs is
// cancelled, and the handler sees its request end, when the client goes away
// and when the server shuts down. User events used to run with
// context.Background(): the request lasted until the handler's timeout.
func TestUserEventCancelled(t *testing.T) {
	for _, end := range []string{"client disconnects", "server shuts down"} {
		t.Run(end, func(t *testing.T) {
			h := &hangingHandler{started: make(chan struct{}, 1), ended: make(chan struct{}, 1), release: make(chan struct{})}
			hs := httptest.NewServer(h)
			defer hs.Close()
			defer close(h.release)
			file := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(file, []byte(fmt.Sprintf("hubs:\n  chat:\n    event_handlers:\n      - url_template: %q\n        user_events: [\"*\"]\n        timeout: 1h\n",
				hs.URL+"/{hub}/{event}")), 0o600)
			srv := servertest.Start(t, servertest.Options{ConfigFile: file,
				Settings: []string{"auth.access_keys=primary-key", "server.shutdown_timeout=5s"}})

			keys, _ := auth.NewKeyRing("primary-key")
			tok, _ := keys.MintClientToken(auth.ClientAudience(srv.Endpoint(), "chat"), auth.MintOptions{})
			u := strings.Replace(srv.Endpoint(), "http", "ws", 1) + "/client/hubs/chat?access_token=" + url.QueryEscape(tok)
			conn, br, _, err := ws.Dialer{Protocols: []string{"json.webpubsub.azure.v1"}, Timeout: 5 * time.Second}.Dial(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var rd io.Reader = conn
			if br != nil {
				rd = io.MultiReader(br, conn)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, _, err := wsutil.ReadServerData(struct {
				io.Reader
				io.Writer
			}{rd, conn}); err != nil { // connected
				t.Fatal(err)
			}
			wsutil.WriteClientText(conn, []byte(`{"type":"event","event":"hang","ackId":1,"dataType":"text","data":"x"}`))
			select {
			case <-h.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the user event never reached the handler")
			}

			stopped := make(chan error, 1)
			if end == "client disconnects" {
				conn.Close()
			} else {
				go func() { stopped <- srv.Stop() }()
			}
			select {
			case <-h.ended:
			case <-time.After(10 * time.Second):
				t.Fatalf("when the %s, the handler's request was not cancelled", end)
			}
			if end == "server shuts down" {
				if err := <-stopped; err != nil {
					t.Errorf("shutdown: %v", err)
				}
			}
		})
	}
}
