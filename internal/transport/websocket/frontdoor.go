package websocket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/internal/listener"
)

// FrontDoor sits between a listener and an http.Server. A new connection whose request
// line starts with "GET " + prefix (a WebSocket client endpoint) is served by the
// FrontDoor itself: it reads the request with net/http's parser and calls the handler
// once, on a ResponseWriter that hijacks the raw connection. An upgrade then costs no
// per-connection HTTP state (net/http's 4 KiB reader and writer, which a hijacked
// connection never returns to their pools, its contexts and response buffer); a handler
// that answers instead of upgrading has its response written and the connection closed.
// Every other connection goes, with what was read of it, to the http.Server that serves
// the FrontDoor as its listener, so REST calls and keep-alive keep net/http's handling.
type FrontDoor struct {
	ln            net.Listener
	line          []byte // "GET " + prefix
	handler       http.Handler
	headerTimeout time.Duration
	log           *slog.Logger
	refused       interface{ Inc() } // requests refused before the handler

	ctx       context.Context // of every request served here; cancelled by Close
	cancel    context.CancelFunc
	work      chan net.Conn // to an idle router goroutine
	others    chan net.Conn // for the http.Server's Accept
	done      chan struct{}
	closeOnce sync.Once
	err       error          // why accepting stopped; set before done closes
	wg        sync.WaitGroup // router goroutines
}

// MaxHeaderBytes bounds a request's line and headers read by the FrontDoor: a client
// token in the query may be 64 KiB. Larger is answered with 431. The server gives its
// http.Servers the same cap (see HTTPMaxHeaderBytes), so one cap holds on every path.
const MaxHeaderBytes = 68 << 10

// HTTPMaxHeaderBytes is the http.Server.MaxHeaderBytes that caps a request at
// MaxHeaderBytes: net/http reads 4096 bytes beyond its setting before it answers 431.
const HTTPMaxHeaderBytes = MaxHeaderBytes - 4096

// NewFrontDoor returns a FrontDoor for ln that serves the requests for paths starting with
// prefix (such as "/client/hubs/") with handler, each request line and headers read
// within headerTimeout (default 10s). Serve runs it; the http.Server for every other
// connection takes the FrontDoor as its listener. Requests refused before reaching the
// handler count as handshake errors.
func (s *Server) NewFrontDoor(ln net.Listener, prefix string, handler http.Handler, headerTimeout time.Duration) *FrontDoor {
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &FrontDoor{
		ln: ln, line: []byte("GET " + prefix), handler: handler, headerTimeout: headerTimeout,
		log: s.log, refused: s.metrics.handshakeErrors, ctx: ctx, cancel: cancel,
		work: make(chan net.Conn), others: make(chan net.Conn), done: make(chan struct{}),
	}
}

// Serve accepts connections until the listener fails for good or the FrontDoor is
// closed, and returns the listener's error (net.ErrClosed after Close). A temporary
// error (out of descriptors and the like) is waited out, 5 ms doubling to 1 s as
// net/http does: the server's listener (listener.Retrying) waits them out itself,
// counted and logged; this is for a listener that does not.
func (f *FrontDoor) Serve() error {
	var wait time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if listener.Temporary(err) {
				wait = min(max(2*wait, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(wait):
					continue
				case <-f.done:
					return net.ErrClosed
				}
			}
			f.stop(err)
			return err
		}
		wait = 0
		select {
		case f.work <- c: // an idle router takes it
		default:
			f.wg.Add(1)
			go f.router(c)
		}
	}
}

// routerIdle is how long a router goroutine waits for its next connection before it ends.
const routerIdle = 10 * time.Second

// router routes c, then the connections Serve hands it until it has waited routerIdle
// for one or the FrontDoor closes. A goroutine that routes many connections keeps the
// stack it grew for the first: a new goroutine per connection would start small and grow
// (a copy of the stack) twice while a request is parsed and its token checked, about a
// tenth of the CPU of a handshake.
func (f *FrontDoor) router(c net.Conn) {
	defer f.wg.Done()
	idle := time.NewTimer(routerIdle)
	defer idle.Stop()
	for {
		f.route(c)
		idle.Reset(routerIdle)
		select {
		case c = <-f.work:
		case <-idle.C:
			return
		case <-f.done:
			return
		}
	}
}

// Accept implements net.Listener for the http.Server: connections not served here.
func (f *FrontDoor) Accept() (net.Conn, error) {
	select {
	case c := <-f.others:
		return c, nil
	case <-f.done:
		return nil, f.err
	}
}

// Close stops accepting: it closes the listener. Connections already handed to the
// http.Server are its own; upgrades under way finish (see Wait).
func (f *FrontDoor) Close() error { return f.stop(net.ErrClosed) }

// stop ends accepting for reason, which Accept then returns.
func (f *FrontDoor) stop(reason error) error {
	var err error
	f.closeOnce.Do(func() {
		f.err = reason
		close(f.done)
		f.cancel()
		err = f.ln.Close()
	})
	return err
}

// Addr implements net.Listener.
func (f *FrontDoor) Addr() net.Addr { return f.ln.Addr() }

// Wait returns, after Close, when no connection is being routed or served by the
// FrontDoor any more, or when ctx is done.
func (f *FrontDoor) Wait(ctx context.Context) error {
	idle := make(chan struct{})
	go func() { f.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// route reads as much of the request line as tells whether it is ours, then serves the
// request or hands the connection on.
func (f *FrontDoor) route(c net.Conn) {
	lc := &limitedConn{Conn: c, remain: MaxHeaderBytes}
	br := frontReaderPool.Get().(*bufio.Reader)
	br.Reset(lc)
	c.SetReadDeadline(time.Now().Add(f.headerTimeout))
	ours, err := f.isOurs(br)
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// As net/http answers plain HTTP on a TLS port, in the clear.
			re.Conn.SetWriteDeadline(time.Now().Add(f.headerTimeout))
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		c.Close() // the request line did not come in time, or the client went away
		putFrontReader(br)
		return
	}
	if !ours {
		// net/http reads the request again, from the start; it sets its own deadlines.
		c.SetReadDeadline(time.Time{})
		lc.remain = -1
		select {
		case f.others <- &peekedConn{Conn: c, r: br}:
		case <-f.done:
			c.Close()
		}
		return
	}
	f.serve(c, lc, br)
}

// isOurs reports whether the request line starts with f.line, reading no further than
// needed to tell.
func (f *FrontDoor) isOurs(br *bufio.Reader) (bool, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		got, err := br.Peek(min(n, len(f.line)))
		if !bytes.HasPrefix(f.line, got) {
			return false, nil
		}
		if len(got) == len(f.line) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// serve reads one request and gives it to the handler. After a hijack the connection is
// the handler's; otherwise the response is written and the connection closed. The
// request's context ends when the FrontDoor closes.
func (f *FrontDoor) serve(c net.Conn, lc *limitedConn, br *bufio.Reader) {
	req, err := http.ReadRequest(br)
	if err != nil {
		f.refuse(c, lc, err)
		putFrontReader(br)
		return
	}
	lc.remain = -1
	req.RemoteAddr = c.RemoteAddr().String()
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		req.TLS = &cs
	}
	req = req.WithContext(context.WithValue(f.ctx, connKey{}, c))
	w := &frontResponse{conn: c, br: br, header: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				f.log.Error("panic serving an upgrade request", "remote", req.RemoteAddr, "panic", p)
			}
			c.Close()
		}
	}()
	f.handler.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
	}
	if w.br != nil { // not handed to a hijacker
		putFrontReader(br)
	}
}

// refuse answers a request that could not be read, as net/http would, and closes.
func (f *FrontDoor) refuse(c net.Conn, lc *limitedConn, err error) {
	f.refused.Inc()
	status, text := http.StatusBadRequest, "malformed request: "+err.Error()
	var ne net.Error
	switch {
	case lc.remain == 0:
		status, text = http.StatusRequestHeaderFieldsTooLarge, "request line and headers exceed "+strconv.Itoa(MaxHeaderBytes)+" bytes"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		c.Close() // nobody to answer
		return
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n%s\n",
		status, http.StatusText(status), text)
	c.Close()
}

// frontResponse is the ResponseWriter of a request served by the FrontDoor.
type frontResponse struct {
	conn     net.Conn
	br       *bufio.Reader // the FrontDoor's pooled reader; nil once a hijacker owns it
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
	held     bytes.Buffer // what the hijacker wrote: the 101 response
}

func (w *frontResponse) Header() http.Header { return w.header }

func (w *frontResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *frontResponse) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Hijack implements http.Hijacker for the Server's Upgrade: deadlines cleared, a reader
// holding whatever the client sent after the request, and a writer into held, which the
// socket's first write sends (see upgradeFront). The reader is the FrontDoor's own when it
// holds bytes; when it holds none, the hijacker gets a reader of its own of 16 bytes (a
// socket drops an empty one and reads the connection itself) and the FrontDoor's goes
// back to its pool.
func (w *frontResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	w.conn.SetDeadline(time.Time{})
	br := w.br
	if br.Buffered() > 0 {
		w.br = nil
	} else {
		br = bufio.NewReaderSize(w.conn, 16)
	}
	return w.conn, bufio.NewReadWriter(br, bufio.NewWriterSize(&w.held, 256)), nil
}

// finish writes the buffered response and closes the connection.
func (w *frontResponse) finish() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	resp := &http.Response{
		StatusCode: w.status, ProtoMajor: 1, ProtoMinor: 1, Header: w.header,
		Body: io.NopCloser(&w.body), ContentLength: int64(w.body.Len()), Close: true,
	}
	w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	resp.Write(w.conn)
	w.conn.Close()
}

// limitedConn fails reads once remain bytes were read; remain < 0 means no limit.
type limitedConn struct {
	net.Conn
	remain int64
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.remain < 0 {
		return c.Conn.Read(p)
	}
	if c.remain == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > c.remain {
		p = p[:c.remain]
	}
	n, err := c.Conn.Read(p)
	c.remain -= int64(n)
	return n, err
}

var errHeaderTooLarge = errors.New("request head too large")

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

// SyscallConn gives the descriptor, for the raw writes and the poller of an upgraded socket.
func (p *peekedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := p.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if p.r != nil {
		if p.r.Buffered() > 0 {
			return p.r.Read(b)
		}
		putFrontReader(p.r)
		p.r = nil
	}
	return p.Conn.Read(b)
}

var frontReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

func putFrontReader(br *bufio.Reader) {
	br.Reset(nil)
	frontReaderPool.Put(br)
}

// TLSState returns the TLS state of the connection that ctx's request came on, for an
// http.Server with ConnContext behind a FrontDoor: net/http sets Request.TLS only for a
// *tls.Conn, and the FrontDoor hands it its connections wrapped. nil when the connection
// is not TLS (or not known).
func TLSState(ctx context.Context) *tls.ConnectionState {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if p, ok := c.(*peekedConn); ok {
		c = p.Conn
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	cs := tc.ConnectionState()
	return &cs
}

// looksLikeHTTP reports whether the first bytes of what came instead of a TLS record are
// an HTTP method.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}
