package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// restConn is one publisher's keep-alive HTTP/1.1 connection to the REST API. The
// publisher writes each request and reads its response in its own goroutine:
// net/http's Transport hands both to goroutines of its own, and those two extra
// goroutine switches per request cost CPU that the server needs when the tool and the
// server share a small machine (and they lengthen each request's round trip, which
// bounds a publisher's rate). The bytes are still written and parsed by net/http
// (Request.Write, ReadResponse).
type restConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	stop func() bool // stops the cancellation of the connection's I/O by ctx
}

// restTimeout bounds one request and its response.
const restTimeout = 30 * time.Second

// do sends req and returns the response with its body read and closed. A failed or
// closed connection is dropped, and the next request dials a new one.
//
// ctx is the publisher's: the connection is dialed with it, and when it is done, the
// request in flight fails at once and no other is sent.
func (c *restConn) do(ctx context.Context, req *http.Request) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.conn == nil {
		if err := c.dial(ctx, req.URL); err != nil {
			return nil, err
		}
	}
	resp, err := c.roundTrip(ctx, req)
	if err != nil {
		c.close()
		return nil, err
	}
	if resp.Close {
		c.close()
	}
	return resp, nil
}

func (c *restConn) dial(ctx context.Context, u *url.URL) error {
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	case u.Scheme == "http":
		port = "80"
	default:
		return fmt.Errorf("bench: a REST endpoint must be http or https, not %q", u.Scheme)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return err
	}
	if u.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return err
		}
		conn = tc
	}
	c.conn, c.br, c.bw = conn, bufio.NewReaderSize(conn, 4096), bufio.NewWriterSize(conn, 4096)
	c.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return nil
}

func (c *restConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	c.conn.SetDeadline(time.Now().Add(restTimeout))
	if err := ctx.Err(); err != nil {
		return nil, err // done before the new deadline replaced the one AfterFunc set
	}
	if err := req.Write(c.bw); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the server closed the connection without answering
		}
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

func (c *restConn) close() {
	if c.conn != nil {
		c.stop()
		c.conn.Close()
		c.conn = nil
	}
}
