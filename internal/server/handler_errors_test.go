package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// syncBuffer is a log sink the server's goroutines may write concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestHandlerFailureHidesInternals: when an event handler cannot be reached,
// the connect 502 body and the user event's InternalServerError ack tell the
// client that the handler is unavailable, and neither names the handler's URL
// nor the dial error; the log has both, the URL as its own attribute.
func TestHandlerFailureHidesInternals(t *testing.T) {
	dead := deadAddr(t)
	handlerURL := "http://" + dead + "/secret-handler-path/{event}"
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf(`hubs:
  gate:
    event_handlers:
      - url_template: %q
        system_events: [connect]
  chat:
    event_handlers:
      - url_template: %q
        user_events: ["*"]
`, handlerURL, handlerURL)), 0o600)
	cfg, err := config.Load(file, nil, []string{"server.addr=127.0.0.1:0", "signalr.addr=127.0.0.1:0",
		"server.data_dir=" + t.TempDir(), "auth.access_keys=primary-key"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	leaks := func(what, text string) {
		t.Helper()
		for _, secret := range []string{dead, "secret-handler-path", "connection refused", "dial tcp", "upstream:"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s %q reveals %q", what, text, secret)
			}
		}
	}
	keys, _ := auth.NewKeyRing("primary-key")

	// connect: the handshake is refused with a 502 whose body says only that
	// the handler is unavailable.
	tok, _ := keys.MintClientToken(auth.ClientAudience(srv.Endpoint(), "gate"), auth.MintOptions{})
	req, _ := http.NewRequest(http.MethodGet, srv.Endpoint()+"/client/hubs/gate?access_token="+url.QueryEscape(tok), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", "json.webpubsub.azure.v1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "unavailable") {
		t.Fatalf("connect with a dead handler: %d %q, want 502 saying the handler is unavailable", resp.StatusCode, body)
	}
	leaks("connect 502 body", string(body))

	// user event: the ack says InternalServerError and that the handler is
	// unavailable.
	tok, _ = keys.MintClientToken(auth.ClientAudience(srv.Endpoint(), "chat"), auth.MintOptions{})
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
	rw := struct {
		io.Reader
		io.Writer
	}{rd, conn}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := wsutil.ReadServerData(rw); err != nil { // connected
		t.Fatal(err)
	}
	wsutil.WriteClientText(conn, []byte(`{"type":"event","event":"echo","ackId":1,"dataType":"text","data":"x"}`))
	ack, _, err := wsutil.ReadServerData(rw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ack), `"name":"InternalServerError"`) || !strings.Contains(string(ack), "unavailable") {
		t.Fatalf("user event to a dead handler: ack %s, want InternalServerError saying the handler is unavailable", ack)
	}
	leaks("user event ack", string(ack))

	// The operator's log has what the client was not told.
	for _, want := range []string{"connect event failed", "user event failed", "url=http://" + dead + "/secret-handler-path/connect",
		"url=http://" + dead + "/secret-handler-path/echo", "connection refused"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
