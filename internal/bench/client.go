package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// Subprotocol is the client protocol every bench connection speaks.
const Subprotocol = "json.webpubsub.azure.v1"

const readBufferSize = 2048

// client is one WebSocket connection held by a worker: one goroutine reading it with a
// small bufio.Reader, writes (pongs, sendToGroup) under a mutex.
type client struct {
	w    *Worker
	spec ConnSpec
	conn net.Conn
	br   *bufio.Reader
	// proto is the SignalR hub protocol of a SignalR client; nil for Web PubSub
	// (json.webpubsub.azure.v1).
	proto hubproto.Protocol

	wmu sync.Mutex // serialises writes

	mu     sync.Mutex // guards tracks
	tracks map[uint32]*seqTrack

	sent    uint64 // messages this client published (publish loop only)
	closing atomic.Bool
	done    chan struct{}
}

var (
	dataKey         = []byte(`"data":"`)
	presenceKey     = []byte(`"data":{"type":"presence"`)
	connectedKey    = []byte(`"event":"connected"`)
	disconnectedKey = []byte(`"event":"disconnected"`)
	ackErrorKey     = []byte(`"success":false`)
)

// dial opens the connection and waits for the "connected" system message, so that the
// connection is registered and in its token's groups when dial returns.
func (w *Worker) dial(ctx context.Context, spec ConnSpec, fresh bool) (*client, error) {
	token, err := w.token(spec, fresh)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	u := w.wsBases[spec.ID%len(w.wsBases)] + "?access_token=" + token
	d := w.wsDialer(spec)
	d.Protocols = []string{Subprotocol}
	conn, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, readBufferSize)
	}
	c := &client{w: w, spec: spec, conn: conn, br: br, tracks: map[uint32]*seqTrack{}, done: make(chan struct{})}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	var buf []byte
	for {
		op, p, err := c.readFrame(&buf)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("waiting for connected: %w", err)
		}
		if op == ws.OpText && bytes.Contains(p, connectedKey) {
			break
		}
	}
	conn.SetReadDeadline(time.Time{})
	return c, nil
}

// wsDialer returns the WebSocket dialer of spec's connection, bound to its source address.
func (w *Worker) wsDialer(spec ConnSpec) ws.Dialer {
	d := ws.Dialer{
		Timeout:         15 * time.Second,
		ReadBufferSize:  readBufferSize,
		WriteBufferSize: readBufferSize,
	}
	// No TCP keep-alive probes: the connection answers the server's pings, and their setup
	// is four system calls per dial.
	nd := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: -1}
	network := "tcp"
	if w.sourceIPs > 0 {
		ip := net.IPv4(127, 0, byte((spec.ID%w.sourceIPs)/254), byte(1+(spec.ID%w.sourceIPs)%254))
		nd.LocalAddr, nd.Control, network = &net.TCPAddr{IP: ip}, bindNoPort, "tcp4"
	}
	d.NetDial = func(ctx context.Context, _, addr string) (net.Conn, error) {
		return nd.DialContext(ctx, network, addr)
	}
	return d
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: bind the source address but pick
// the port at connect time, per destination, so one source address is not limited to one
// ephemeral port range across all destinations.
const ipBindAddressNoPort = 24

func bindNoPort(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1) // best effort
	})
}

// closeError is a close frame received from the server.
type closeError struct {
	code ws.StatusCode
	text string
}

func (e closeError) Error() string { return fmt.Sprintf("close %d %s", e.code, e.text) }

// readFrame returns the next complete data message (text or binary), answering pings and
// returning a closeError on a close frame. *buf is reused across calls.
func (c *client) readFrame(buf *[]byte) (ws.OpCode, []byte, error) {
	var msgOp ws.OpCode
	msg := (*buf)[:0]
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, nil, err
		}
		if h.Length > 16<<20 {
			return 0, nil, fmt.Errorf("frame of %d bytes", h.Length)
		}
		n := int(h.Length)
		if h.OpCode.IsControl() {
			var ctl [125]byte
			if n > len(ctl) {
				return 0, nil, errors.New("control frame too long")
			}
			if _, err := io.ReadFull(c.br, ctl[:n]); err != nil {
				return 0, nil, err
			}
			if h.Masked {
				ws.Cipher(ctl[:n], h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				c.write(ws.OpPong, ctl[:n])
			case ws.OpClose:
				ce := closeError{code: ws.StatusNoStatusRcvd}
				if n >= 2 {
					ce.code = ws.StatusCode(binary.BigEndian.Uint16(ctl[:2]))
					ce.text = string(ctl[2:n])
				}
				return 0, nil, ce
			}
			continue
		}
		if h.OpCode != ws.OpContinuation {
			msgOp = h.OpCode
			msg = msg[:0]
		}
		off := len(msg)
		if cap(msg) < off+n {
			nb := make([]byte, off, off+n+256)
			copy(nb, msg)
			msg = nb
		}
		msg = msg[:off+n]
		if _, err := io.ReadFull(c.br, msg[off:]); err != nil {
			return 0, nil, err
		}
		if h.Masked {
			ws.Cipher(msg[off:], h.Mask, 0)
		}
		*buf = msg
		if h.Fin {
			return msgOp, msg, nil
		}
	}
}

func (c *client) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return wsutil.WriteClientMessage(c.conn, op, p)
}

// readLoop reads until the connection ends, accounting every bench payload.
func (c *client) readLoop() {
	defer close(c.done)
	var buf []byte
	for {
		op, p, err := c.readFrame(&buf)
		if err != nil {
			if !c.closing.Load() {
				c.w.count(&c.w.disconnects, reason(err))
			}
			c.conn.Close()
			return
		}
		if c.proto != nil {
			c.onHub(p, time.Now().UnixNano())
			continue
		}
		if op != ws.OpText {
			continue
		}
		c.onText(p, time.Now().UnixNano())
	}
}

func (c *client) onText(p []byte, now int64) {
	i := bytes.Index(p, dataKey)
	if i < 0 {
		switch {
		case bytes.Contains(p, presenceKey): // a member notification (presence scenario)
			c.w.presence.Add(1)
		case bytes.Contains(p, disconnectedKey):
			c.w.count(&c.w.disconnects, "disconnected message")
		case bytes.Contains(p, ackErrorKey):
			c.w.count(&c.w.errors, "error ack: "+string(p))
		}
		return
	}
	stream, seq, ts, err := parsePayload(p[i+len(dataKey):])
	if err != nil {
		c.w.count(&c.w.errors, "foreign message")
		return
	}
	c.track(stream, seq, ts, now)
}

// track accounts one delivery of message seq of stream, sent at ts and received at now.
func (c *client) track(stream uint32, seq uint64, ts, now int64) {
	c.mu.Lock()
	t := c.tracks[stream]
	if t == nil {
		t = newSeqTrack()
		c.tracks[stream] = t
	}
	isNew := t.add(seq)
	c.mu.Unlock()
	c.w.record(c.spec.ID, now, ts, isNew)
}

// close says goodbye with a 1000 close frame and closes the socket.
func (c *client) close() {
	c.closing.Store(true)
	c.wmu.Lock()
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	c.wmu.Unlock()
	c.conn.Close()
}

// reason names an error for the errors-by-reason tables.
func reason(err error) string {
	var ce closeError
	var se ws.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		if ce.text != "" {
			return fmt.Sprintf("close %d: %.60s", ce.code, ce.text)
		}
		return fmt.Sprintf("close %d", ce.code)
	case errors.As(err, &se):
		return "http " + strconv.Itoa(int(se))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
