package websocket

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// smallBuffers shrinks the server side's send buffer so that a client that
// does not read stalls the writer quickly.
func smallBuffers(p *peer) {
	if tc, ok := p.sock.conn.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
}

// stall fills a socket whose client never reads.
func stall(p *peer, bytes int) {
	chunk := strings.Repeat("s", 8192)
	for n := 0; n < bytes; n += len(chunk) {
		p.src.push(text(chunk))
	}
	p.sock.Wake()
}

// TestStalledReaderDoesNotBlockOthers serves a client that never reads and
// a healthy one from the same writer goroutine: the healthy one keeps
// receiving, promptly.
func TestStalledReaderDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1, WriteTimeout: time.Minute})
	e.prepare = smallBuffers
	_, stalled := e.dial(t, 4096)
	stall(stalled, 8<<20)
	// Stalled means in the slow lane; what was queued after the stall stays
	// in the source (the core queue bound applies to it), so the queue need
	// not be empty.
	eventually.True(t, "the stalled socket to stall", 30*time.Second, stalled.sock.slow.Load)

	healthy, hp := e.dial(t, 0)
	var worst time.Duration
	for i := 0; i < 50; i++ {
		start := time.Now()
		hp.src.push(text(fmt.Sprint("ping ", i)))
		hp.sock.Wake()
		_, data := healthy.readFrame(t)
		if want := fmt.Sprint("ping ", i); string(data) != want {
			t.Fatalf("healthy got %q, want %q", data, want)
		}
		worst = max(worst, time.Since(start))
	}
	// Latency is logged, not asserted: speed is measured by benchmarks, and
	// the point here is that the healthy socket is served at all.
	t.Logf("worst latency of the healthy socket next to a stalled one: %v", worst)
	select {
	case <-stalled.handler.closed:
		t.Error("stalled socket dropped before WriteTimeout")
	default:
	}
}

// TestManyStalledReaders is TestStalledReaderDoesNotBlockOthers with 20
// stalled sockets on the writer: each retry of a stalled socket may block
// the writer (before the slow lane, up to a deadline each, adding up).
func TestManyStalledReaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1, WriteTimeout: time.Minute})
	e.prepare = smallBuffers
	for i := 0; i < 20; i++ {
		_, p := e.dial(t, 4096)
		stall(p, 1<<20)
	}
	healthy, hp := e.dial(t, 0)
	var worst, total time.Duration
	const n = 30
	for i := 0; i < n; i++ {
		start := time.Now()
		hp.src.push(text("x"))
		hp.sock.Wake()
		healthy.readFrame(t)
		d := time.Since(start)
		worst, total = max(worst, d), total+d
	}
	t.Logf("20 stalled sockets: healthy latency mean %v, worst %v (logged, not asserted)", total/n, worst)
}

func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	e := newEnv(t, Options{Writers: 1, WriteTimeout: timeout})
	e.prepare = smallBuffers
	c, p := e.dial(t, 4096)
	start := time.Now()
	stall(p, 8<<20)
	reason := p.handler.waitClosed(t, 10*time.Second)
	elapsed := time.Since(start)
	if elapsed < timeout {
		t.Errorf("dropped after %v, before WriteTimeout %v", elapsed, timeout)
	}
	if got := metrictest.Value(t, e.reg, "switchboard_websocket_closes_total", "cause", "write_timeout"); got != 1 {
		t.Errorf("closes_total{cause=write_timeout} = %v, want 1", got)
	}
	t.Logf("dropped after %v (WriteTimeout %v), HandleClose(%q)", elapsed, timeout, reason)
	// The client sees the connection end once it drains what was sent.
	io.Copy(io.Discard, c.conn)
	if n := e.srv.Sockets(); n != 0 {
		t.Errorf("Sockets() = %d", n)
	}
}

// TestHandleCloseAfterDroppedCloseFrame closes a stalled socket (as the core
// does for a slow consumer), then the peer resets the connection so that the
// close frame can never be written. HandleClose must follow the drop at
// once, not wait WriteTimeout (an hour here) for the close frame.
func TestHandleCloseAfterDroppedCloseFrame(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1, WriteTimeout: time.Hour})
	e.prepare = smallBuffers
	c, p := e.dial(t, 4096)
	stall(p, 8<<20)
	p.sock.Close(1008, "slow consumer")
	if tc, ok := c.conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // reset, not a graceful close
	}
	c.conn.Close()
	p.handler.waitClosed(t, 30*time.Second)
}

// TestPartialWriteKeepsTheRest stalls a socket mid-frame for a while, then
// reads everything: every frame must arrive whole and in order, including
// frames queued after the stall.
func TestPartialWriteKeepsTheRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Writers: 1, WriteTimeout: time.Minute})
	e.prepare = smallBuffers
	c, p := e.dial(t, 4096)
	const n = 48
	body := func(i int) string { return fmt.Sprintf("frame %04d ", i) + strings.Repeat("x", 8000) }
	for i := 0; i < n; i++ {
		p.src.push(text(body(i)))
	}
	p.sock.Wake()
	eventually.True(t, "the socket to stall", 30*time.Second, p.sock.slow.Load)
	time.Sleep(100 * time.Millisecond) // several passes find the socket stalled
	for i := n; i < n+10; i++ {
		p.src.push(text(body(i)))
	}
	p.sock.Wake()
	for i := 0; i < n+10; i++ {
		h, data, err := c.tryReadFrame(3 * time.Second)
		if err != nil {
			t.Fatalf("frame %d of %d: %v (bytes written: %v)", i, n+10, err, metrictest.Value(t, e.reg, "switchboard_websocket_bytes_out_total"))
		}
		if h.OpCode != ws.OpText || string(data) != body(i) {
			t.Fatalf("frame %d: %v frame of %d bytes starting %.20q, want text %.20q (%d bytes): the stream is corrupt", i, h.OpCode, len(data), data, body(i), len(body(i)))
		}
	}
}

// TestSlowButSteadyReaderSurvives reads slowly but never stops: the socket
// accepts bytes on every pass, so WriteTimeout ("a socket that accepts no
// bytes for this long is dropped") must not fire.
func TestSlowButSteadyReaderSurvives(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second // far above the reader's 10 ms pauses
	e := newEnv(t, Options{Writers: 1, WriteTimeout: timeout})
	e.prepare = smallBuffers
	c, p := e.dial(t, 4096)
	const total = 512 << 10
	stall(p, total)
	buf := make([]byte, 16<<10)
	got := 0
	start := time.Now()
	for got < total {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.conn.Read(buf)
		got += n
		if err != nil {
			t.Fatalf("after %d of %d bytes in %v (never idle for more than ~20ms): %v; closes by cause: write_timeout=%v",
				got, total, time.Since(start).Round(time.Millisecond), err,
				metrictest.Value(t, e.reg, "switchboard_websocket_closes_total", "cause", "write_timeout"))
		}
		time.Sleep(10 * time.Millisecond) // ~1.5 MB/s
	}
}

// codec is a minimal core.Codec for tests that run a real core.
type codec struct{}

func (codec) Key() int                                         { return 5 }
func (codec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (codec) Sequenced() bool                                  { return false }
func (codec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (codec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

// coreHandler detaches the conn when its socket ends.
type coreHandler struct {
	conn *core.Conn
	sock *Socket
	done chan struct{}
}

func (h *coreHandler) HandleMessage([]byte, bool) error { return nil }
func (h *coreHandler) HandleClose(reason string) {
	h.conn.Detach(h.sock, reason)
	close(h.done)
}

// TestStalledSocketHitsCoreQueueBound runs a real core conn on a socket whose
// client never reads. The core's MaxQueueBytes must bound what the stalled
// socket holds: the conn ends as a slow consumer long before WriteTimeout.
// If the writer keeps draining the conn into its own pending buffer while the
// socket is stalled, the core queue never fills and the bound is bypassed.
func TestStalledSocketHitsCoreQueueBound(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var endReason string
	node, err := core.NewNode(core.Config{
		Registerer: prometheus.NewRegistry(),
		Limits:     core.Limits{MaxQueueBytes: 256 << 10},
		OnConnEnd: func(_ *core.Conn, reason string) {
			mu.Lock()
			endReason = reason
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hub, _ := node.Hub("hub")
	reg := prometheus.NewRegistry()
	srv, err := NewServer(Options{Writers: 1, WriteTimeout: 5 * time.Second, PingInterval: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	conns := make(chan *core.Conn, 1)
	ts := newHTTP(t, srv, func(sock *Socket) {
		if tc, ok := sock.conn.(*net.TCPConn); ok {
			tc.SetWriteBuffer(4096)
		}
		c, err := hub.Connect(core.ConnInfo{Codec: codec{}, Dialect: "test"}, sock)
		if err != nil {
			t.Error(err)
			return
		}
		sock.Bind(c)
		sock.Serve(&coreHandler{conn: c, sock: sock, done: make(chan struct{})})
		conns <- c
	})
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	client, _, _, err := d.Dial(context.Background(), ts)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-conns

	body := []byte(strings.Repeat("m", 4096))
	start := time.Now()
	ctx := context.Background()
	for !c.Ended() && time.Since(start) < 4*time.Second {
		hub.Send(ctx, core.Target{Kind: core.ToConn, Name: c.ID()}, &core.Message{Data: body})
		time.Sleep(time.Millisecond) // ~4 MB/s
	}
	// The conn is marked ended before its OnConnEnd hook runs (on the
	// goroutine that takes it out of the indexes).
	ended := func() string {
		mu.Lock()
		defer mu.Unlock()
		return endReason
	}
	if c.Ended() {
		eventually.True(t, "the end hook", 5*time.Second, func() bool { return ended() != "" })
	}
	reason := ended()
	if !c.Ended() || !strings.Contains(reason, "slow consumer") {
		t.Errorf("after %v of sending ~4 MB/s to a client that never reads, with MaxQueueBytes 256 KiB: conn ended=%v (reason %q); %v bytes written; the writer drained the conn's queue while the socket was stalled, so the queue bound never applied",
			time.Since(start).Round(time.Millisecond), c.Ended(), reason,
			metrictest.Value(t, reg, "switchboard_websocket_bytes_out_total"))
	}
}

func newHTTP(t *testing.T, srv *Server, accept func(*Socket)) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sock, err := srv.Upgrade(w, r, "")
		if err != nil {
			return
		}
		accept(sock)
	}))
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}
