package signalr_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cristalhq/jwt/v4"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dialect/signalr"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/upstream"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const (
	testKey = "primary-key-for-signalr-tests"
	rs      = "\x1e" // the JSON record separator
)

// serverOptions tune one test server; zero fields keep the harness defaults.
type serverOptions struct {
	noUpstream       bool          // EndpointConfig.Upstream stays nil
	stateful         bool          // EndpointConfig.StatefulReconnect
	pingInterval     time.Duration // websocket.Options.PingInterval
	keepAlive        time.Duration // EndpointConfig.KeepAlive (SSE)
	handshakeTimeout time.Duration
	negotiateTimeout time.Duration
	longPollTimeout  time.Duration
	longPollGap      time.Duration
	maxMessage       int
	recovery         time.Duration      // core.Config.RecoveryWindow
	rate             *ratelimit.Limiter // EndpointConfig.RateLimits; nil: none
}

// testServer is a SignalR node with its client endpoint on a loopback listener.
type testServer struct {
	url  string
	node *core.Node
	keys *auth.KeyRing
	reg  *prometheus.Registry
	ep   *signalr.Endpoint
	up   *fakeUpstream
}

func startServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	var ep *signalr.Endpoint
	node, err := core.NewNode(core.Config{
		RecoveryWindow: o.recovery,
		Registerer:     reg,
		OnConnEnd:      func(c *core.Conn, reason string) { ep.ConnEnded(c, reason) },
	})
	if err != nil {
		t.Fatal(err)
	}
	wsrv, err := websocket.NewServer(websocket.Options{
		Registerer:      reg,
		PingInterval:    o.pingInterval,
		IdleTimeout:     time.Minute, // test clients do not answer pings
		MaxMessageBytes: o.maxMessage,
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewKeyRing(testKey)
	if err != nil {
		t.Fatal(err)
	}
	up := newFakeUpstream()
	cfg := signalr.EndpointConfig{
		Node: node, Keys: keys, WebSocket: wsrv,
		StatefulReconnect: o.stateful,
		KeepAlive:         o.keepAlive,
		HandshakeTimeout:  o.handshakeTimeout,
		NegotiateTimeout:  o.negotiateTimeout,
		LongPollTimeout:   o.longPollTimeout,
		LongPollGap:       o.longPollGap,
		MaxMessageBytes:   o.maxMessage,
		RateLimits:        o.rate,
		Registerer:        reg,
	}
	if !o.noUpstream {
		cfg.Upstream = up
	}
	ep, err = signalr.NewEndpoint(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(ep)
	t.Cleanup(func() {
		node.Shutdown(context.Background(), "test over")
		ep.Close()
		hs.CloseClientConnections()
		hs.Close()
		wsrv.Close()
	})
	return &testServer{url: hs.URL, node: node, keys: keys, reg: reg, ep: ep, up: up}
}

// token mints a client token for hub as the Management SDK does.
func (s *testServer) token(t testing.TB, hub, user string) string {
	t.Helper()
	tok, err := s.keys.MintSignalRClientToken(auth.SignalRClientAudience(s.url, hub), user, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// customToken signs claims with the test key (for claims the minting API
// does not offer: asrs.s.htt, a past exp).
func customToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	return signToken(t, testKey, claims)
}

// signToken signs claims with key, HS256.
func signToken(t testing.TB, key string, claims map[string]any) string {
	t.Helper()
	signer, err := jwt.NewSignerHS(jwt.HS256, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewBuilder(signer).Build(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

func (s *testServer) hub(t testing.TB, name string) *core.Hub {
	t.Helper()
	h, err := s.node.Hub(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// send is a REST-like send of a JSON invocation to every conn of hub.
func (s *testServer) send(t testing.TB, hub, invocation string) {
	t.Helper()
	m := &core.Message{Type: core.JSON, Data: []byte(invocation)}
	if err := s.hub(t, hub).Send(context.Background(), core.Target{Kind: core.ToAll}, m); err != nil {
		t.Fatal(err)
	}
}

// clientURL is /client/?hub=…&id=…&access_token=… (empty values left out).
func (s *testServer) clientURL(hub, id, token string) string {
	q := url.Values{}
	if hub != "" {
		q.Set("hub", hub)
	}
	if id != "" {
		q.Set("id", id)
	}
	if token != "" {
		q.Set("access_token", token)
	}
	return s.url + "/client/?" + q.Encode()
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

// do sends one HTTP request with a bearer token (when not empty).
func do(t testing.TB, method, u, token string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

type negotiateResult struct {
	NegotiateVersion     int    `json:"negotiateVersion"`
	ConnectionID         string `json:"connectionId"`
	ConnectionToken      string `json:"connectionToken"`
	UseStatefulReconnect bool   `json:"useStatefulReconnect"`
	AvailableTransports  []struct {
		Transport       string   `json:"transport"`
		TransferFormats []string `json:"transferFormats"`
	} `json:"availableTransports"`
}

// negotiate POSTs /client/negotiate?hub=hub&negotiateVersion=1 plus extra
// query and returns the answer; it fails the test on anything but 200.
func (s *testServer) negotiate(t testing.TB, hub, token, extra string) negotiateResult {
	t.Helper()
	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub="+hub+"&negotiateVersion=1"+extra, token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("negotiate: %d %s", resp.StatusCode, body)
	}
	var n negotiateResult
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatalf("negotiate body %s: %v", body, err)
	}
	return n
}

// ---- fake upstream ----

type invokeCall struct {
	conn    upstream.SignalRConn
	target  string
	body    string
	msgpack bool
}

type disconnectCall struct {
	conn upstream.SignalRConn
	err  string
}

// answer is what the fake upstream returns for an invocation.
type answer struct {
	status int
	body   []byte
	err    error
}

// fakeUpstream records the calls of the endpoint and answers invocations as
// scripted per target (default: 204).
type fakeUpstream struct {
	mu           sync.Mutex
	answers      map[string]answer
	noHandler    map[string]bool
	connected    []upstream.SignalRConn
	disconnected []disconnectCall
	invokes      []invokeCall
}

var _ signalr.Upstream = (*fakeUpstream)(nil)

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{answers: map[string]answer{}, noHandler: map[string]bool{}}
}

func (f *fakeUpstream) answer(target string, a answer) {
	f.mu.Lock()
	f.answers[target] = a
	f.mu.Unlock()
}

func (f *fakeUpstream) refuse(target string) {
	f.mu.Lock()
	f.noHandler[target] = true
	f.mu.Unlock()
}

func (f *fakeUpstream) Connected(conn upstream.SignalRConn) {
	f.mu.Lock()
	f.connected = append(f.connected, conn)
	f.mu.Unlock()
}

func (f *fakeUpstream) Disconnected(conn upstream.SignalRConn, errMsg string) {
	f.mu.Lock()
	f.disconnected = append(f.disconnected, disconnectCall{conn, errMsg})
	f.mu.Unlock()
}

func (f *fakeUpstream) HasUpstream(hub, category, event string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return category == upstream.CategoryMessages && !f.noHandler[event]
}

func (f *fakeUpstream) Invoke(ctx context.Context, conn upstream.SignalRConn, target string, body []byte, msgpack bool) (int, []byte, error) {
	f.mu.Lock()
	f.invokes = append(f.invokes, invokeCall{conn, target, string(body), msgpack})
	a, ok := f.answers[target]
	f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if !ok {
		return http.StatusNoContent, nil, nil
	}
	return a.status, a.body, a.err
}

func (f *fakeUpstream) invocations() []invokeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]invokeCall(nil), f.invokes...)
}

func (f *fakeUpstream) connects() []upstream.SignalRConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]upstream.SignalRConn(nil), f.connected...)
}

func (f *fakeUpstream) disconnects() []disconnectCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]disconnectCall(nil), f.disconnected...)
}

// ---- WebSocket client ----

type wsClient struct {
	t    testing.TB
	ws   *wstest.Client
	conn net.Conn
	// pings: hub-protocol Pings (the keep-alive, which the writers' sweep
	// may send at any time) are returned, not skipped.
	pings bool
}

// dialWS opens a WebSocket to an http:// URL; it returns the HTTP status of
// a refused upgrade as an error.
func dialWS(t testing.TB, httpURL string, hdr http.Header) (*wsClient, error) {
	t.Helper()
	c, err := wstest.DialHeader(t, wsURL(httpURL), hdr)
	if err != nil {
		return nil, err
	}
	return &wsClient{t: t, ws: c, conn: c.Conn}, nil
}

func mustDialWS(t testing.TB, httpURL string) *wsClient {
	t.Helper()
	c, err := dialWS(t, httpURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *wsClient) sendText(s string) { c.t.Helper(); c.ws.WriteText([]byte(s)) }

func (c *wsClient) sendBinary(b []byte) { c.t.Helper(); c.ws.WriteBinary(b) }

// sendClose sends a close frame (a client that says goodbye).
func (c *wsClient) sendClose(code int) { c.t.Helper(); c.ws.WriteClose(ws.StatusCode(code), "") }

type closeErr struct {
	code   int
	reason string
}

func (e *closeErr) Error() string { return fmt.Sprintf("closed %d %q", e.code, e.reason) }

type frame struct {
	data   string
	binary bool
}

// next reads the next data frame, skipping (unless c.pings) hub-protocol
// Pings; a close frame comes back as a *closeErr.
func (c *wsClient) next() (frame, error) {
	for {
		p, op, err := c.ws.ReadErr()
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return frame{}, &closeErr{int(ce.Code), ce.Reason}
		}
		if err != nil {
			return frame{}, err
		}
		f := frame{data: string(p), binary: op == ws.OpBinary}
		if !c.pings && (f.data == `{"type":6}`+rs || f.data == "\x02\x91\x06") {
			continue
		}
		return f, nil
	}
}

// read returns the next data frame; it fails the test on anything else.
func (c *wsClient) read() frame {
	c.t.Helper()
	f, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// readText expects a text frame with exactly want.
func (c *wsClient) readText(want string) {
	c.t.Helper()
	f := c.read()
	if f.binary || f.data != want {
		c.t.Fatalf("got frame %q (binary %v), want text %q", f.data, f.binary, want)
	}
}

// readBinary expects a binary frame with exactly want.
func (c *wsClient) readBinary(want []byte) {
	c.t.Helper()
	f := c.read()
	if !f.binary || f.data != string(want) {
		c.t.Fatalf("got frame % x (binary %v), want binary % x", f.data, f.binary, want)
	}
}

// expectClose reads the next frame and expects it to be a close frame.
func (c *wsClient) expectClose() *closeErr {
	c.t.Helper()
	f, err := c.next()
	if err == nil {
		c.t.Fatalf("want a close frame, got data %q", f.data)
	}
	ce, ok := err.(*closeErr)
	if !ok {
		c.t.Fatalf("want a close frame, got %v", err)
	}
	return ce
}

// expectEnd reads until the server ends the TCP connection (a close frame
// may come first); it fails when the connection stays open.
func (c *wsClient) expectEnd() {
	c.t.Helper()
	for {
		_, err := c.next()
		if err == nil {
			continue
		}
		if _, ok := err.(*closeErr); ok {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.t.Fatalf("connection still open: %v", err)
		}
		return
	}
}

// connectJSON negotiates for user on hub, opens a WebSocket and completes a
// JSON handshake of version v; it returns the client and the negotiate answer.
func (s *testServer) connectJSON(t testing.TB, hub, user string, v int, extra string) (*wsClient, negotiateResult) {
	t.Helper()
	tok := s.token(t, hub, user)
	n := s.negotiate(t, hub, tok, extra)
	c := mustDialWS(t, s.clientURL(hub, n.ConnectionToken, tok))
	c.sendText(fmt.Sprintf(`{"protocol":"json","version":%d}`+rs, v))
	c.readText("{}" + rs)
	return c, n
}

// ---- SSE client ----

type sseClient struct {
	events chan string // data of each event, lines joined with "\n"
	done   chan error  // the stream's end
	status int
	header http.Header
	cancel context.CancelFunc
}

// openSSE GETs an event stream and reads the preamble; events then arrive on
// the channel.
func openSSE(t testing.TB, u, token string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := &sseClient{events: make(chan string, 64), done: make(chan error, 1), status: resp.StatusCode, header: resp.Header, cancel: cancel}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		close(c.events)
		c.done <- fmt.Errorf("status %d", resp.StatusCode)
		return c
	}
	br := bufio.NewReader(resp.Body)
	pre := make([]byte, 3)
	if _, err := io.ReadFull(br, pre); err != nil || string(pre) != ":\r\n" {
		t.Fatalf("SSE preamble %q, %v; want \":\\r\\n\"", pre, err)
	}
	go func() {
		defer resp.Body.Close()
		defer close(c.events)
		var data []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				c.done <- err
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			switch {
			case line == "":
				c.events <- strings.Join(data, "\n")
				data = nil
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
	}()
	return c
}

// next returns the next event's data; ok is false when the stream ended.
func (c *sseClient) next(t testing.TB) (string, bool) {
	t.Helper()
	select {
	case e, ok := <-c.events:
		return e, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no SSE event")
		return "", false
	}
}

func (c *sseClient) expect(t testing.TB, want string) {
	t.Helper()
	got, ok := c.next(t)
	if !ok || got != want {
		t.Fatalf("SSE event %q (open %v), want %q", got, ok, want)
	}
}

// ---- long polling ----

type pollResult struct {
	status int
	body   string
	header http.Header
}

// poll GETs the long-polling URL in the background.
func poll(t testing.TB, u, token string) <-chan pollResult {
	t.Helper()
	ch := make(chan pollResult, 1)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	go func() {
		c := http.Client{Timeout: 20 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			ch <- pollResult{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- pollResult{resp.StatusCode, string(b), resp.Header}
	}()
	return ch
}

func awaitPoll(t testing.TB, ch <-chan pollResult) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("poll not answered")
		return pollResult{}
	}
}
