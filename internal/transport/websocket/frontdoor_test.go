package websocket

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// frontEnv is a FrontDoor on a loopback listener with an http.Server behind it.
// Requests for /client/hubs/ upgrade, or, when their query asks, are refused with 401
// (refuse=…) or panic (panic=1); others get 200 with what they sent.
type frontEnv struct {
	srv      *Server
	reg      *prometheus.Registry
	front    *FrontDoor
	addr     string
	viaHTTP  atomic.Int64 // connections the http.Server saw
	sockets  chan *frontSocket
	frontErr chan error
}

// frontSocket is an upgraded socket and how its request reached the handler.
type frontSocket struct {
	sock    *Socket
	handler *testHandler
	viaHTTP bool // through the http.Server, not the front door
}

func newFrontEnv(t *testing.T, headerTimeout time.Duration) *frontEnv {
	t.Helper()
	e := &frontEnv{reg: prometheus.NewRegistry(), sockets: make(chan *frontSocket, 16), frontErr: make(chan error, 1)}
	srv, err := NewServer(Options{PingInterval: time.Hour, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	mux.HandleFunc("/client/hubs/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("panic") != "" {
			panic("handler bug")
		}
		if r.URL.Query().Get("refuse") != "" {
			w.Header().Set("X-Why", "asked to")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "refused: "+r.URL.Query().Get("refuse"))
			return
		}
		_, plain := r.Context().Value(connKey{}).(*net.TCPConn)
		sock, err := srv.Upgrade(w, r, "")
		if err != nil {
			return
		}
		h := newTestHandler()
		if r.URL.Query().Get("unbound") == "" {
			src := &testSource{}
			if welcome := r.URL.Query().Get("welcome"); welcome != "" {
				src.push(text(welcome))
			}
			sock.Bind(src)
		}
		sock.Serve(h)
		e.sockets <- &frontSocket{sock: sock, handler: h, viaHTTP: !plain}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.front = srv.NewFrontDoor(ln, "/client/hubs/", mux, headerTimeout)
	hs := &http.Server{Handler: mux, ConnContext: ConnContext, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.viaHTTP.Add(1)
		}
	}}
	go func() { e.frontErr <- e.front.Serve() }()
	go hs.Serve(e.front)
	t.Cleanup(func() {
		hs.Close()
		if err := <-e.frontErr; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.front.Wait(ctx); err != nil {
			t.Errorf("Wait: %v", err)
		}
		srv.Close()
	})
	return e
}

func (e *frontEnv) socket(t *testing.T) *frontSocket {
	t.Helper()
	select {
	case s := <-e.sockets:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no socket within 5s")
		return nil
	}
}

func upgradeRequest(path string) string {
	var key [16]byte
	rand.Read(key[:])
	return "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestFrontDoorUpgrades: an upgrade to /client/hubs/ is served outside net/http, on the
// plain TCP connection (so writes go raw and the socket parks in the poller), and a frame
// the client sent in the same packet as its request reaches the socket.
func TestFrontDoorUpgrades(t *testing.T) {
	e := newFrontEnv(t, 0)
	c := dialRaw(t, e.addr)
	req := upgradeRequest("/client/hubs/chat")
	if _, err := c.Write(append([]byte(req), rawFrame(true, ws.OpText, []byte("right behind"), true)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("response %v, %v", resp, err)
	}
	s := e.socket(t)
	if s.viaHTTP || e.viaHTTP.Load() != 0 {
		t.Errorf("the upgrade went through net/http (%d connections there)", e.viaHTTP.Load())
	}
	if s.sock.raw == nil || s.sock.fd < 0 {
		t.Errorf("socket without raw access (raw %v, fd %d)", s.sock.raw, s.sock.fd)
	}
	if m := s.handler.next(t); m.data != "right behind" {
		t.Errorf("first message %q", m.data)
	}
	// And later frames, read by the socket itself.
	if _, err := c.Write(rawFrame(true, ws.OpText, []byte("later"), true)); err != nil {
		t.Fatal(err)
	}
	if m := s.handler.next(t); m.data != "later" {
		t.Errorf("second message %q", m.data)
	}
}

// TestFrontDoorSendsWelcomeWithTheResponse: the 101 response waits in memory for the
// socket's first frames and leaves with them, without TCP_CORK; a socket served before
// anything is bound sends its 101 alone, at once.
func TestFrontDoorSendsWelcomeWithTheResponse(t *testing.T) {
	e := newFrontEnv(t, 0)
	conn, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+e.addr+"/client/hubs/chat?welcome=hi")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if br == nil || br.Buffered() == 0 {
		t.Fatal("the welcome frame did not arrive with the 101 response")
	}
	if h, err := ws.ReadHeader(br); err != nil || h.OpCode != ws.OpText || h.Length != 2 {
		t.Fatalf("first frame %+v, %v", h, err)
	}
	s := e.socket(t)
	if s.viaHTTP || s.sock.corked.Load() {
		t.Errorf("via http %v, corked %v", s.viaHTTP, s.sock.corked.Load())
	}

	conn2, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), "ws://"+e.addr+"/client/hubs/chat?unbound=1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.Write(rawFrame(true, ws.OpText, []byte("hello"), true))
	if m := e.socket(t).handler.next(t); m.data != "hello" {
		t.Errorf("unbound socket read %q", m.data)
	}
}

// TestFrontDoorFailedUpgrade: the upgrader's own refusal of a bad handshake reaches the
// client, and counts.
func TestFrontDoorFailedUpgrade(t *testing.T) {
	e := newFrontEnv(t, 0)
	before := testutil.ToFloat64(e.srv.metrics.handshakeErrors)
	c := dialRaw(t, e.addr)
	io.WriteString(c, "GET /client/hubs/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if got := testutil.ToFloat64(e.srv.metrics.handshakeErrors) - before; got != 1 {
		t.Errorf("handshake errors counted: %v, want 1", got)
	}
}

// TestFrontDoorHandsOtherRequestsToHTTP: any other first request, including one that
// starts like ours, reaches the http.Server whole; a later upgrade on a keep-alive
// connection is net/http's and still gets raw access.
func TestFrontDoorHandsOtherRequestsToHTTP(t *testing.T) {
	e := newFrontEnv(t, 0)
	for _, tc := range []struct{ req, want string }{
		{"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "POST /api/x hello"},
		{"GET /client/hub HTTP/1.1\r\nHost: x\r\n\r\n", "GET /client/hub "},
		{"GET /clients HTTP/1.1\r\nHost: x\r\n\r\n", "GET /clients "},
	} {
		c := dialRaw(t, e.addr)
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
		if resp.StatusCode != 200 || string(body) != tc.want {
			t.Errorf("%q: %d %q, want 200 %q", tc.req, resp.StatusCode, body, tc.want)
		}
	}
	// A request line that arrives in pieces is still told apart correctly.
	c := dialRaw(t, e.addr)
	io.WriteString(c, "GET /cli")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c, "ent/hubs/chat?refuse=slowly HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("split request line: %v, %v", resp, err)
	}
	if got := e.viaHTTP.Load(); got != 3 {
		t.Errorf("%d connections reached net/http, want 3", got)
	}

	// Keep-alive: a REST call, then an upgrade on the same connection.
	c = dialRaw(t, e.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET /api/y HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v, %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	io.WriteString(c, upgradeRequest("/client/hubs/chat"))
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	s := e.socket(t)
	if !s.viaHTTP || s.sock.raw == nil || s.sock.fd < 0 {
		t.Errorf("keep-alive upgrade: via http %v, raw %v, fd %d", s.viaHTTP, s.sock.raw, s.sock.fd)
	}
	c.Write(rawFrame(true, ws.OpText, []byte("kept alive"), true))
	if m := s.handler.next(t); m.data != "kept alive" {
		t.Errorf("message %q", m.data)
	}
}

// TestFrontDoorWritesResponses: a handler that answers instead of upgrading has its
// status, headers and body written, and the connection closes.
func TestFrontDoorWritesResponses(t *testing.T) {
	e := newFrontEnv(t, 0)
	c := dialRaw(t, e.addr)
	io.WriteString(c, upgradeRequest("/client/hubs/chat?refuse=no+token"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Why") != "asked to" || string(body) != "refused: no token" || !resp.Close {
		t.Errorf("response %d %v %q close=%v", resp.StatusCode, resp.Header, body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the response: %v, want EOF", err)
	}
}

// TestFrontDoorSurvivesAPanic: a handler that panics loses its connection, not the server;
// the next connection is served.
func TestFrontDoorSurvivesAPanic(t *testing.T) {
	e := newFrontEnv(t, 0)
	c := dialRaw(t, e.addr)
	io.WriteString(c, upgradeRequest("/client/hubs/chat?panic=1"))
	if n, err := c.Read(make([]byte, 100)); err != io.EOF || n != 0 {
		t.Errorf("after the panic: read %d, %v; want EOF", n, err)
	}
	c = dialRaw(t, e.addr)
	io.WriteString(c, upgradeRequest("/client/hubs/chat?refuse=after"))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("next request: %v, %v", resp, err)
	}
}

// TestFrontDoorRefusesBadRequests: a request the parser refuses gets 400, one larger than
// the limit 431, both counted; a client that sends too little is dropped after the timeout.
func TestFrontDoorRefusesBadRequests(t *testing.T) {
	e := newFrontEnv(t, 300*time.Millisecond)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"no version", "GET /client/hubs/chat\r\nHost: x\r\n\r\n", 400},
		{"bad header line", "GET /client/hubs/chat HTTP/1.1\r\nno colon here\r\n\r\n", 400},
		{"huge header", "GET /client/hubs/chat?access_token=" + strings.Repeat("a", MaxHeaderBytes) + " HTTP/1.1\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.srv.metrics.handshakeErrors)
			c := dialRaw(t, e.addr)
			go io.WriteString(c, tc.req) // the server may stop reading before the end
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := testutil.ToFloat64(e.srv.metrics.handshakeErrors) - before; got != 1 {
				t.Errorf("handshake errors counted: %v, want 1", got)
			}
		})
	}
	for _, partial := range []string{"", "GET /client/hu", "GET /client/hubs/chat HTTP/1.1\r\nHost: x\r\n"} {
		c := dialRaw(t, e.addr)
		io.WriteString(c, partial)
		start := time.Now()
		n, err := c.Read(make([]byte, 100))
		if err != io.EOF || n != 0 {
			t.Errorf("%q: read %d, %v; want EOF", partial, n, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%q: dropped after %v", partial, d)
		}
	}
}

// TestFrontDoorClose: after Close nothing is accepted and Accept reports net.ErrClosed.
func TestFrontDoorClose(t *testing.T) {
	e := newFrontEnv(t, 0)
	e.front.Close()
	if _, err := e.front.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after Close")
	}
}

// FuzzFrontDoor feeds arbitrary first bytes to a connection: the front door answers,
// hands the connection on, or drops it, and never panics or hangs.
func FuzzFrontDoor(f *testing.F) {
	f.Add([]byte(upgradeRequest("/client/hubs/chat")))
	f.Add([]byte("GET /client/hubs/chat?refuse=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET /client/hubs/ HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /api/x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"))
	f.Add([]byte("GET /client/hubs/\x00 HTTP/1.1\r\nHost: \xff\r\n\r\n"))
	srv, err := NewServer(Options{PingInterval: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("refuse") != "" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if sock, err := srv.Upgrade(w, r, ""); err == nil {
			sock.Close(1000, "fuzz")
			sock.Serve(newTestHandler())
		}
	})
	fd := srv.NewFrontDoor(nil, "/client/hubs/", handler, 20*time.Millisecond)
	f.Fuzz(func(t *testing.T, data []byte) { routeOnce(t, fd, data) })
}

// routeOnce routes one connection that sends data, reads all it gets back, and checks
// that the front door is done with it within a bound.
func routeOnce(t testing.TB, fd *FrontDoor, data []byte) {
	client, server := net.Pipe()
	routed := make(chan struct{})
	go func() { defer close(routed); fd.route(server) }()
	go func() {
		client.SetWriteDeadline(time.Now().Add(time.Second))
		client.Write(data)
	}()
	handed := make(chan struct{})
	go func() { // the http.Server's part: take a handed-on connection and close it
		defer close(handed)
		select {
		case c := <-fd.others:
			c.Close()
		case <-routed:
		}
	}()
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	io.Copy(io.Discard, client)
	client.Close()
	select {
	case <-routed:
	case <-time.After(5 * time.Second):
		t.Fatalf("route did not return for %q", data)
	}
	<-handed
}
