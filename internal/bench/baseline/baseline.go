// Package baseline is the load tool's yardstick: a server that does only what the `fanout`
// and `connect` scenarios need of Switchboard and nothing of its own. It checks no token and
// keeps no hub, queue or metric: a WebSocket upgrade on the raw connection answered with the
// connected message, and REST group sends written, one pre-built frame per send, to every
// connection by a goroutine per connection that writes whatever gathered while it was
// writing (the plain design of a fan-out server).
//
// Run against it, `switchboard bench connect` measures what this machine gives a server's
// handshakes while the load tool shares it: the yardstick for the real server's figure. For
// `fanout` it shows what the plain design gets, next to Switchboard's writers
// (bench/README.md). It is not a server for any other use.
package baseline

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

// AnyKey is the access key of the connection string the baseline prints: the load tool
// signs its tokens with it, and the baseline does not check them.
const AnyKey = "baseline-checks-no-token-baseline-checks-no-token"

// Subprotocol is the only WebSocket subprotocol the baseline speaks, as the load tool does.
const Subprotocol = "json.webpubsub.azure.v1"

// Server answers the load tool on one listener.
type Server struct {
	mu    sync.Mutex
	conns map[*conn]struct{}

	http *http.Server
	rest chanListener // connections that are not WebSocket upgrades, for http
	wg   sync.WaitGroup
}

// New returns a Server; Serve runs it.
func New() *Server {
	s := &Server{conns: map[*conn]struct{}{}, rest: chanListener{ch: make(chan net.Conn), done: make(chan struct{})}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/hubs/{hub}/groups/{group}/{op}", s.send)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s
}

// Serve accepts on ln until ctx ends, then closes every connection and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.http.Serve(&s.rest) }()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			break
		}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.route(c) }()
	}
	s.http.Close()
	s.rest.close()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// route upgrades a request for /client/ on the raw connection and hands anything else to
// the HTTP server.
func (s *Server) route(nc net.Conn) {
	br := bufio.NewReaderSize(nc, 1024)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	head, err := br.Peek(len("GET /client/"))
	if err != nil {
		nc.Close()
		return
	}
	if string(head) != "GET /client/" {
		s.rest.hand(&peekedConn{Conn: nc, r: br})
		return
	}
	up := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Subprotocol }}
	if _, err := up.Upgrade(struct {
		io.Reader
		io.Writer
	}{br, nc}); err != nil {
		nc.Close()
		return
	}
	nc.SetReadDeadline(time.Time{})
	c := &conn{nc: nc, wake: make(chan struct{}, 1)}
	c.queue(connectedFrame)
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); c.writeLoop() }()
	io.Copy(io.Discard, br) // the tool sends nothing but pongs and its close frame
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.close()
}

// connectedFrame is the connected system message; the tool waits for it after the 101.
var connectedFrame = textFrame([]byte(`{"type":"system","event":"connected","userId":"","connectionId":"baseline"}`))

// send writes the request body, as a group message, to every connection.
func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("op") != ":send" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	msg := append([]byte(`{"type":"message","from":"group","group":`), jsonstring.Append(nil, r.PathValue("group"))...)
	msg = append(msg, `,"dataType":"text","data":`...)
	msg = append(jsonstring.Append(msg, string(body)), '}')
	frame := textFrame(msg)
	s.mu.Lock()
	for c := range s.conns {
		c.queue(frame)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// textFrame is an unmasked final text frame holding p.
func textFrame(p []byte) []byte {
	var b bytes.Buffer
	ws.WriteFrame(&b, ws.NewTextFrame(p))
	return b.Bytes()
}

// conn is one WebSocket connection and its pending output.
type conn struct {
	nc   net.Conn
	wake chan struct{}

	mu      sync.Mutex
	pending []byte
	closed  bool
}

func (c *conn) queue(frame []byte) {
	c.mu.Lock()
	c.pending = append(c.pending, frame...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.nc.Close()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes what is pending, all of it in one write, until the connection closes.
func (c *conn) writeLoop() {
	var buf []byte
	for range c.wake {
		c.mu.Lock()
		buf, c.pending = c.pending, buf[:0]
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		if len(buf) > 0 {
			if _, err := c.nc.Write(buf); err != nil {
				c.nc.Close()
				return
			}
		}
	}
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener is a net.Listener fed by route.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) hand(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.done) }) }

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
