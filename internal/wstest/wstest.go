// Package wstest is a WebSocket client for tests against a running server: it dials, and
// reads and writes whole messages with a deadline, failing the test on any error. Tests that
// check an error (a refused handshake, a close code) use the methods that return it.
package wstest

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Timeout bounds each read and the dial: past it the test fails as "never arrived".
const Timeout = 10 * time.Second

// Client is one client WebSocket. Its methods must be called from the test's goroutine.
type Client struct {
	t    testing.TB
	Conn net.Conn
	rw   io.ReadWriter
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
	d := ws.Dialer{Protocols: protocols, Timeout: Timeout}
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil { // bytes the server sent right after its 101
		r = io.MultiReader(br, conn)
	}
	return &Client{t: t, Conn: conn, rw: struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(r), conn}}, nil
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
// wsutil.ClosedError carries the server's close code and reason.
func (c *Client) ReadErr() ([]byte, ws.OpCode, error) {
	c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	return wsutil.ReadServerData(c.rw)
}

// WriteText sends p as one text message.
func (c *Client) WriteText(p []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.Conn, p); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

// WriteBinary sends p as one binary message.
func (c *Client) WriteBinary(p []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientBinary(c.Conn, p); err != nil {
		c.t.Fatalf("websocket write: %v", err)
	}
}

// Close closes the connection without a close handshake, as a client that goes away does.
func (c *Client) Close() { c.Conn.Close() }
