package websocket

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// testSource is a Source fed by the test.
type testSource struct {
	mu     sync.Mutex
	items  []core.Item
	drains int
	seqs   bool // AppendHead writes "#<seq> "
}

func (s *testSource) Drain(_ core.Link, dst []core.Item) []core.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains++
	dst = append(dst, s.items...)
	s.items = s.items[:0]
	return dst
}

func (s *testSource) AppendHead(dst []byte, seq uint64, _ []byte) []byte {
	if !s.seqs || seq == 0 {
		return dst
	}
	return append(strconv.AppendUint(append(dst, '#'), seq, 10), ' ')
}

func (s *testSource) push(items ...core.Item) {
	s.mu.Lock()
	s.items = append(s.items, items...)
	s.mu.Unlock()
}

func text(s string) core.Item { return core.Item{Body: []byte(s)} }

// testHandler records what a socket reads.
type testHandler struct {
	msgs   chan message
	err    func(data []byte) error // optional reply to HandleMessage
	mu     sync.Mutex
	closes []string
	closed chan struct{}
	once   sync.Once
}

type message struct {
	data   string
	binary bool
}

func newTestHandler() *testHandler {
	return &testHandler{msgs: make(chan message, 1024), closed: make(chan struct{})}
}

func (h *testHandler) HandleMessage(data []byte, binary bool) error {
	select {
	case h.msgs <- message{string(data), binary}:
	default:
	}
	if h.err != nil {
		return h.err(data)
	}
	return nil
}

func (h *testHandler) HandleClose(reason string) {
	h.mu.Lock()
	h.closes = append(h.closes, reason)
	h.mu.Unlock()
	h.once.Do(func() { close(h.closed) })
}

func (h *testHandler) closeReasons() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.closes...)
}

// waitClosed waits for HandleClose and returns its reason.
func (h *testHandler) waitClosed(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-h.closed:
		return h.closeReasons()[0]
	case <-time.After(timeout):
		t.Fatalf("HandleClose not called within %v", timeout)
		return ""
	}
}

func (h *testHandler) next(t *testing.T) message {
	t.Helper()
	select {
	case m := <-h.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message reached the handler within 5s")
		return message{}
	}
}

// peer is the server side of one accepted socket.
type peer struct {
	sock    *Socket
	src     *testSource
	handler *testHandler
	custom  Handler // if prepare sets it, the socket serves it instead of handler
}

// env is a Server behind an httptest server.
type env struct {
	srv      *Server
	reg      *prometheus.Registry
	http     *httptest.Server
	url      string
	accepted chan *peer
	// prepare, if set, runs on each accepted peer before Bind and Serve.
	prepare func(*peer)
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), accepted: make(chan *peer, 16)}
	opts.Registerer = e.reg
	if opts.PingInterval == 0 {
		opts.PingInterval = time.Hour // no pings unless a test wants them
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	e.srv = srv
	e.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sock, err := srv.Upgrade(w, r, "")
		if err != nil {
			return
		}
		p := &peer{sock: sock, src: &testSource{}, handler: newTestHandler()}
		if e.prepare != nil {
			e.prepare(p)
		}
		sock.Bind(p.src)
		if p.custom != nil {
			sock.Serve(p.custom)
		} else {
			sock.Serve(p.handler)
		}
		e.accepted <- p
	}))
	e.url = "ws" + strings.TrimPrefix(e.http.URL, "http")
	t.Cleanup(func() {
		e.http.CloseClientConnections()
		e.http.Close()
		srv.Close()
	})
	return e
}

// client is the test's side of a socket.
type client struct {
	conn net.Conn
	r    io.Reader
}

// dial connects a client; readBuf > 0 shrinks its socket receive buffer.
func (e *env) dial(t testing.TB, readBuf int) (*client, *peer) {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second}
	if readBuf > 0 {
		d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.(*net.TCPConn).SetReadBuffer(readBuf)
			return c, nil
		}
	}
	conn, br, _, err := d.Dial(context.Background(), e.url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{conn: conn, r: conn}
	if br != nil {
		c.r = br
	}
	select {
	case p := <-e.accepted:
		return c, p
	case <-time.After(5 * time.Second):
		t.Fatal("server did not accept")
		return nil, nil
	}
}

// readFrame reads one server frame (unmasked).
func (c *client) readFrame(t *testing.T) (ws.Header, []byte) {
	t.Helper()
	h, p, err := c.tryReadFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return h, p
}

func (c *client) tryReadFrame(timeout time.Duration) (ws.Header, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	defer c.conn.SetReadDeadline(time.Time{})
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("server frame is masked")
	}
	if h.Length > 64<<20 {
		return h, nil, errors.New("absurd frame length " + strconv.FormatInt(h.Length, 10))
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.r, p)
	return h, p, err
}

// expectClose reads frames until a close frame and returns its code and
// reason; data frames before it are returned too.
func (c *client) expectClose(t *testing.T) (code ws.StatusCode, reason string, before []string) {
	t.Helper()
	for {
		h, p := c.readFrame(t)
		if h.OpCode == ws.OpClose {
			code, reason = ws.ParseCloseFrameData(p)
			return code, reason, before
		}
		if h.OpCode.IsData() {
			before = append(before, string(p))
		}
	}
}

// expectEOF checks that the server closes the TCP connection.
func (c *client) expectEOF(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, _, err := c.tryReadFrame(time.Until(deadline))
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		t.Fatalf("want EOF, got %v", err)
	}
	t.Fatal("connection not closed within 5s")
}

// write sends a client frame, masked unless raw.
func (c *client) write(t *testing.T, f ws.Frame) {
	t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

func (c *client) writeRaw(t *testing.T, b []byte) {
	t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// frame builds a client frame by hand: fin, opcode, payload, masked or not,
// with an optional forced 7-bit length code.
func rawFrame(fin bool, op ws.OpCode, payload []byte, masked bool) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var b []byte
	n := len(payload)
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch {
	case n < 126:
		b = append(b, b0, mbit|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, b0, mbit|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, b0, mbit|127), uint64(n))
	}
	p := append([]byte(nil), payload...)
	if masked {
		mask := [4]byte{1, 2, 3, 4}
		b = append(b, mask[:]...)
		ws.Cipher(p, mask, 0)
	}
	return append(b, p...)
}
