package sse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// testCodec encodes a message as its data; the disconnected notice is
// "bye:<reason>".
type testCodec struct{}

func (testCodec) Key() int                                         { return 7 }
func (testCodec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (testCodec) Sequenced() bool                                  { return false }
func (testCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (testCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return core.Frame{Data: []byte("bye:" + reason)}, true
}

// fakeSource serves items pushed by the test and honours the link check;
// AppendHead writes "#<seq>|" for sequenced items.
type fakeSource struct {
	mu    sync.Mutex
	link  core.Link
	items []core.Item
}

func (f *fakeSource) Drain(l core.Link, dst []core.Item) []core.Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l != f.link {
		return dst
	}
	dst = append(dst, f.items...)
	clear(f.items)
	f.items = f.items[:0]
	return dst
}

func (f *fakeSource) AppendHead(dst []byte, seq uint64, _ []byte) []byte {
	if seq == 0 {
		return dst
	}
	return append(append(dst, '#', byte('0'+seq%10)), '|')
}

func (f *fakeSource) push(l core.Link, its ...core.Item) {
	f.mu.Lock()
	f.items = append(f.items, its...)
	f.mu.Unlock()
	l.Wake()
}

// peer is the server side of one stream.
type peer struct {
	stream *Stream
	conn   *core.Conn  // with a real core conn
	fake   *fakeSource // otherwise
	ended  chan string // Serve's reason
}

// env serves streams on loopback. Each request gets a Stream bound to a
// real core conn (or to a fakeSource with fake set); prepare runs before
// Serve.
type env struct {
	t        *testing.T
	reg      *prometheus.Registry
	hub      *core.Hub
	url      string
	peers    chan *peer
	opts     Options
	fake     bool
	prepare  func(*peer)
	serveCtx context.Context
}

func newEnv(t *testing.T, opts Options, fake bool) *env {
	t.Helper()
	e := newBubbleEnv(t, opts, fake)
	ts := httptest.NewServer(http.HandlerFunc(e.serveHTTP))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	e.url = ts.URL
	return e
}

// newBubbleEnv is newEnv without a listener, for tests of a stream's timers
// inside a synctest bubble (which cannot wait on real sockets): open serves
// the stream into a pipe.
func newBubbleEnv(t *testing.T, opts Options, fake bool) *env {
	t.Helper()
	e := &env{t: t, reg: prometheus.NewRegistry(), peers: make(chan *peer, 4), fake: fake, serveCtx: context.Background()}
	opts.Registerer = e.reg
	e.opts = opts
	node, err := core.NewNode(core.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if e.hub, err = node.Hub("chat"); err != nil {
		t.Fatal(err)
	}
	return e
}

// pipe is a flushing ResponseWriter whose writes the test reads, in order;
// a write waits only when 1024 are unread, and fails once the reader is
// closed.
type pipe struct {
	header http.Header
	writes chan []byte
	closed chan struct{}
	rest   []byte // of the write being read
}

func newPipe() *pipe {
	return &pipe{header: http.Header{}, writes: make(chan []byte, 1024), closed: make(chan struct{})}
}

func (p *pipe) Header() http.Header { return p.header }
func (p *pipe) WriteHeader(int)     {}
func (p *pipe) Flush()              {}

func (p *pipe) Write(b []byte) (int, error) {
	select {
	case p.writes <- bytes.Clone(b):
		return len(b), nil
	case <-p.closed:
		return 0, io.ErrClosedPipe
	}
}

// Read reads what was written; io.EOF after closeWrite.
func (p *pipe) Read(b []byte) (int, error) {
	if len(p.rest) == 0 {
		w, ok := <-p.writes
		if !ok {
			return 0, io.EOF
		}
		p.rest = w
	}
	n := copy(b, p.rest)
	p.rest = p.rest[n:]
	return n, nil
}

func (p *pipe) closeWrite()  { close(p.writes) }
func (p *pipe) Close() error { close(p.closed); return nil }

func (e *env) serveHTTP(w http.ResponseWriter, r *http.Request) {
	st, err := Start(w, r, e.opts)
	if err != nil {
		e.t.Errorf("Start: %v", err)
		return
	}
	p := &peer{stream: st, ended: make(chan string, 1)}
	if e.fake {
		p.fake = &fakeSource{link: st}
		st.Bind(p.fake)
	} else {
		c, err := e.hub.Connect(core.ConnInfo{Codec: testCodec{}, Dialect: "test"}, st)
		if err != nil {
			e.t.Errorf("Connect: %v", err)
			return
		}
		p.conn = c
		st.Bind(c)
	}
	if e.prepare != nil {
		e.prepare(p)
	}
	e.peers <- p
	reason := st.Serve(e.serveCtx)
	if p.conn != nil {
		p.conn.Detach(st, reason)
	}
	p.ended <- reason
}

// client is the EventSource side.
type client struct {
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
}

// open GETs a stream and returns the client and the server's peer.
func (e *env) open(t *testing.T) (*client, *peer) {
	t.Helper()
	var resp *http.Response
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if e.url == "" { // a bubble env, whose clock may pass the 20 s in a moment
		cancel()
		ctx, cancel = context.WithCancel(context.Background())
		p := newPipe()
		go func() {
			e.serveHTTP(p, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
			p.closeWrite()
		}()
		resp = &http.Response{StatusCode: http.StatusOK, Header: p.header, Body: p}
		t.Cleanup(func() { p.Close() })
	}
	t.Cleanup(cancel)
	if resp == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url, nil)
		req.Header.Set("Accept", "text/event-stream")
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatalf("GET: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
	}
	c := &client{resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	select {
	case p := <-e.peers:
		return c, p
	case <-time.After(10 * time.Second):
		t.Fatal("no stream started within 10s")
		return nil, nil
	}
}

// readEvent reads the raw bytes of one event, up to and including its
// empty line.
func (c *client) readEvent(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			t.Fatalf("reading an event: %v (got %q)", err, b.String())
		}
		if line == "\r\n" {
			return b.String()
		}
	}
}

// expectEnd reads to the end of the response and returns what came
// before it; a clean end of a chunked response is io.EOF.
func (c *client) expectEnd(t *testing.T) string {
	t.Helper()
	rest, err := io.ReadAll(c.br)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("response did not end cleanly: %v (read %q)", err, rest)
	}
	return string(rest)
}

func (p *peer) waitEnded(t *testing.T) string {
	t.Helper()
	select {
	case r := <-p.ended:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s")
		return ""
	}
}

func deliver(c *core.Conn, bodies ...string) {
	for _, b := range bodies {
		c.Deliver(&core.Message{Data: []byte(b)})
	}
}
