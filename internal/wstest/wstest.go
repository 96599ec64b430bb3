// Package wstest is a WebSocket client for tests against a running server: it dials, and
// reads and writes whole messages with a deadline, failing the test on any error. Tests that
// check an error (a refused handshake, a close code) use the methods that return it.
package wstest

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Timeout bounds each read and the dial: past it the test fails as "never arrived".
const Timeout = 10 * time.Second

// Client is one client WebSocket. Its failing methods (Read, WriteText, …) must be called
// from the test's goroutine; ReadErr and WriteFrame may be called from one other goroutine
// each (a reader and a writer).
type Client struct {
	t    testing.TB
	Conn net.Conn
	rw   io.ReadWriter
	// Protocol is the subprotocol the server chose ("" for none).
	Protocol string
	// ReadTimeout bounds each read (Timeout unless set); zero means no bound, for a reader
	// goroutine that ends when the connection is closed.
	ReadTimeout time.Duration
}

// Dial connects to url (ws://…) offering the subprotocols, and fails the test if the
// handshake fails. The connection is closed when the test ends.
func Dial(t testing.TB, url string, protocols ...string) *Client {
	t.Helper()
	c, err := DialErr(t, url, protocols...)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return c
}

// DialErr is Dial that returns the handshake's error (a ws.StatusError for a refusal).
func DialErr(t testing.TB, url string, protocols ...string) (*Client, error) {
	return DialHeader(t, url, nil, protocols...)
}

// DialHeader is DialErr that sends the extra request headers h (nil for none).
func DialHeader(t testing.TB, url string, h http.Header, protocols ...string) (*Client, error) {
	d := ws.Dialer{Protocols: protocols, Timeout: Timeout}
	if h != nil {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	conn, br, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil { // bytes the server sent right after its 101
		r = io.MultiReader(br, conn)
	}
	return &Client{t: t, Conn: conn, Protocol: hs.Protocol, ReadTimeout: Timeout, rw: struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(r), replies{conn}}}, nil
}

// replies carries the client's answers to control frames (pong, the close echo). A server
// that closes the connection right after its close frame is not there to read the echo; the
// close frame is what the test reads, so the echo's write error is dropped.
type replies struct{ conn net.Conn }

func (r replies) Write(p []byte) (int, error) {
	r.conn.Write(p)
	return len(p), nil
}

// Read returns the next data message (control frames are answered and skipped).
func (c *Client) Read() []byte {
	c.t.Helper()
	p, _, err := c.ReadErr()
	if err != nil {
		c.t.Fatalf("websocket read: %v", err)
	}
	return p
}

// ReadErr returns the next data message and its opcode, or the error that ended the read: a
// wsutil.ClosedError carries the server's close code and reason, a net.Error with Timeout()
// says nothing came within ReadTimeout.
func (c *Client) ReadErr() ([]byte, ws.OpCode, error) {
	var deadline time.Time
	if c.ReadTimeout > 0 {
		deadline = time.Now().Add(c.ReadTimeout)
	}
	c.Conn.SetReadDeadline(deadline)
	return wsutil.ReadServerData(c.rw)
}

// WriteText sends p as one text message.
func (c *Client) WriteText(p []byte) {
	c.t.Helper()
	if err := c.WriteFrame(ws.OpText, p); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

// WriteBinary sends p as one binary message.
func (c *Client) WriteBinary(p []byte) {
	c.t.Helper()
	if err := c.WriteFrame(ws.OpBinary, p); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

// WriteClose sends a close frame with code and reason (a client that says goodbye).
func (c *Client) WriteClose(code ws.StatusCode, reason string) {
	c.t.Helper()
	if err := c.WriteFrame(ws.OpClose, ws.NewCloseFrameBody(code, reason)); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

// WriteFrame sends p, masked, as one final frame of opcode op (data or control, whatever its
// content), and returns the write's error.
func (c *Client) WriteFrame(op ws.OpCode, p []byte) error {
	return wsutil.WriteClientMessage(c.Conn, op, p)
}

// Close closes the connection without a close handshake, as a client that goes away does.
func (c *Client) Close() { c.Conn.Close() }
