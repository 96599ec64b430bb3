package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// rawRequest writes req on a new connection to endpoint and returns the status line of
// the answer, or "" when the server closed the connection without one. It fails the test
// when neither happens within 10 s (the server waited for what the client withheld).
func rawRequest(t *testing.T, endpoint, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	var ne net.Error
	if errorsAs(err, &ne) && ne.Timeout() {
		t.Fatalf("no answer and no close: the server is still waiting for the request")
	}
	return strings.TrimSpace(line)
}

// TestRefusalDoesNotWaitForBody (finding 4): an unauthenticated POST that announces a
// body and withholds it is answered 401 at once. Before, net/http read what was left of
// the body before writing the 401, and the SignalR listener had no read timeout: the
// socket was held for ever.
func TestRefusalDoesNotWaitForBody(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	for _, ep := range []string{srv.SignalREndpoint(), srv.Endpoint()} {
		for _, path := range []string{"/client/negotiate?hub=chat", "/api/hubs/chat/:send?api-version=2024-01-01"} {
			got := rawRequest(t, ep, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 401") && !strings.HasPrefix(got, "HTTP/1.1 404") {
				t.Errorf("%s%s with a withheld body: %q, want 401 (404 where the path is not served)", ep, path, got)
			}
		}
	}
}

// TestWithheldBodyIsDropped (finding 4): an authenticated POST whose body never comes is
// dropped after server.read_timeout on the SignalR listener (before, it had none).
func TestWithheldBodyIsDropped(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"server.read_timeout=300ms"}})
	sr := srv.SignalREndpoint()
	tok, connToken := negotiateChat(t, srv)
	// The first poll opens the long-polling transport and is answered at once.
	poll, _ := http.NewRequest(http.MethodGet, sr+"/client/?hub=chat&id="+connToken, nil)
	poll.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(poll)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	got := rawRequest(t, sr, "POST /client/?hub=chat&id="+connToken+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+
		"\r\nContent-Length: 10\r\n\r\n")
	if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("a withheld body: %q, want a close or 400", got)
	}
}

// TestHeaderCapOnEveryPath (finding 9): REST paths take no more header bytes than the
// WebSocket handshake path (68 KiB); before, net/http's default of 1 MB applied.
func TestHeaderCapOnEveryPath(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	big := strings.Repeat("a", 100<<10)
	for _, ep := range []string{srv.Endpoint(), srv.SignalREndpoint()} {
		got := rawRequest(t, ep, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: "+big+"\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("%s/api/health with a 100 KiB header: %q, want 431", ep, got)
		}
		got = rawRequest(t, ep, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: "+big[:60<<10]+"\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Errorf("%s/api/health with a 60 KiB header: %q, want 200", ep, got)
		}
	}
}

// TestMaxConnections: at limits.max_connections, WebSocket handshakes on both
// listeners and negotiate get 503 with a reason and Retry-After; REST and /metrics keep
// working; a connection that closes makes room again.
func TestMaxConnections(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"limits.max_connections=1"}})
	wps := srv.Endpoint()
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(wps, "chat"), auth.MintOptions{UserID: "u1", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(wps, "http", "ws", 1) + "/client/hubs/chat?access_token=" + tok
	first, _, _, err := ws.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	_, _, _, err = ws.Dial(context.Background(), url)
	var se ws.StatusError
	if !errorsAs(err, &se) || int(se) != http.StatusServiceUnavailable {
		t.Fatalf("second connection at the limit: %v, want 503", err)
	}
	// The body and headers, read raw.
	got := rawRequest(t, wps, "GET /client/hubs/chat?access_token="+tok+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 503") {
		t.Fatalf("GET at the limit: %q", got)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.SignalREndpoint()+"/client/negotiate?hub=chat", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "limits.max_connections") {
		t.Fatalf("negotiate at the limit: %d %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for _, u := range []string{wps + "/api/health", srv.SignalREndpoint() + "/api/health", wps + "/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s at the limit: %d", u, resp.StatusCode)
		}
		if strings.HasSuffix(u, "/metrics") && !strings.Contains(string(b), `switchboard_admission_refused_total{reason="max_connections"} 3`) {
			t.Errorf("refusals not counted: %s", grep(string(b), "admission"))
		}
	}
	first.Close()
	eventually.Nil(t, 10*time.Second, func() error {
		c, _, _, err := ws.Dial(context.Background(), url)
		if err != nil {
			return fmt.Errorf("after the first connection closed: %w", err)
		}
		c.Close()
		return nil
	})
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSSEOutlivesReadTimeout: an SSE stream is not bound by server.read_timeout: a
// message sent after it passed still arrives. (net/http clears the read deadline when it
// starts its background read of a request without a body; this guards that held
// requests keep doing so.)
func TestSSEOutlivesReadTimeout(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"server.read_timeout=200ms"}})
	sr := srv.SignalREndpoint()
	tok, connToken := negotiateChat(t, srv)
	conn := sr + "/client/?hub=chat&id=" + connToken
	get, _ := http.NewRequest(http.MethodGet, conn, nil)
	get.Header.Set("Authorization", "Bearer "+tok)
	get.Header.Set("Accept", "text/event-stream")
	stream, err := http.DefaultClient.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	post, _ := http.NewRequest(http.MethodPost, conn, strings.NewReader(`{"protocol":"json","version":1}`+"\x1e"))
	post.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(600 * time.Millisecond) // three read timeouts
	if r := restCall(t, srv, http.MethodPost, sr+"/api/v1/hubs/chat/users/u1", `{"target":"late","arguments":["x"]}`); r.StatusCode != http.StatusAccepted {
		t.Fatalf("send to the user: %d", r.StatusCode)
	}
	lines := bufio.NewReader(stream.Body)
	done := make(chan error, 1)
	go func() {
		for {
			l, err := lines.ReadString('\n')
			if err != nil {
				done <- err
				return
			}
			if strings.Contains(l, `"target":"late"`) {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the stream ended before the message: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message never came")
	}
}

// TestMaxConnectionsRefusalReadableByBrowsers: a browser's negotiate refused at
// limits.max_connections carries the CORS headers every other answer of the SignalR
// client endpoint carries (a 429 of the rate limits included). Without them the
// browser's SignalR client saw a network error, not the 503 and its Retry-After.
func TestMaxConnectionsRefusalReadableByBrowsers(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"limits.max_connections=1"}})
	wps := srv.Endpoint()
	tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(wps, "chat"), auth.MintOptions{UserID: "u1", TTL: time.Minute})
	first, _, _, err := ws.Dial(context.Background(), strings.Replace(wps, "http", "ws", 1)+"/client/hubs/chat?access_token="+tok)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	defer first.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.SignalREndpoint()+"/client/negotiate?hub=chat&negotiateVersion=1", nil)
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("negotiate at the limit: %d, want 503", resp.StatusCode)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("negotiate refused at the limit: Access-Control-Allow-Origin %q, Allow-Credentials %q; want the origin and true",
			got, resp.Header.Get("Access-Control-Allow-Credentials"))
	}
}

// negotiateChat negotiates a SignalR connection of user u1 to hub chat; it returns the
// client token and the connection token.
func negotiateChat(t *testing.T, srv *servertest.Server) (tok, connToken string) {
	t.Helper()
	sr := srv.SignalREndpoint()
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
	defer resp.Body.Close()
	var neg struct{ ConnectionToken string }
	if err := json.NewDecoder(resp.Body).Decode(&neg); err != nil || neg.ConnectionToken == "" {
		t.Fatalf("negotiate: %d, %v", resp.StatusCode, err)
	}
	return tok, neg.ConnectionToken
}
