package websocket

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/core"
)

// Handler receives what a socket reads. Both methods run on the socket's
// read goroutine.
type Handler interface {
	// HandleMessage gets one whole client message. A returned *CloseError
	// closes the socket with its code; any other error closes with 1011.
	HandleMessage(data []byte, binary bool) error
	// HandleClose is called once when the socket is gone.
	HandleClose(reason string)
}

// CloseError asks for a close with Code and Reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return "websocket: close " + strconv.Itoa(e.Code) + ": " + e.Reason
}

// Socket is one upgraded WebSocket connection. It implements core.Link.
type Socket struct {
	srv  *Server
	w    *writer
	conn net.Conn
	raw  syscall.RawConn // the descriptor, for non-blocking writev; nil if not available
	fd   int             // for the poller; -1 when not polled
	br   *bufio.Reader   // nil while parked
	h    Handler
	hdr  [ws.MaxHeaderSize]byte

	// Reader state (see inKernel).
	inq      int
	inqProbe func(fd uintptr)

	scheduled    atomic.Bool
	corked       atomic.Bool  // holding the 101 response back for the first frames (see cork)
	lastRead     atomic.Int64 // unix nanoseconds
	clientClosed atomic.Bool  // the client sent a close frame

	// mu guards the fields below.
	mu          sync.Mutex
	src         core.Source
	closing     bool
	closeCode   int
	closeReason string
	pongs       [][]byte
	pingDue     bool
	keepAlive   []byte // data frame sent instead of a ping; nil: ping
	keepAliveOp ws.OpCode
	preamble    []byte // the 101 response, to go before the first frames (see upgradeFront)
	dead        bool
	parked      bool   // waiting in the poller, no goroutine reading
	killReason  string // why the socket was dropped, for a parked reader

	closedFrame chan struct{} // closed by kill: the close frame is out, or never will be

	// Writer state: owned by the writer goroutine, or by the slow lane
	// while slow is set.
	slow        atomic.Bool
	closeQueued bool // the close frame is written or pending
}

var _ core.Link = (*Socket)(nil)

var nextWriter atomic.Uint64

// newSocket registers a socket for conn; preamble, if any, is written before its first
// frames.
func newSocket(s *Server, conn net.Conn, br *bufio.Reader, preamble []byte) *Socket {
	if br != nil && br.Buffered() == 0 {
		br = nil // the hijacked 4 KiB reader is empty: take a small pooled one when needed
	}
	sock := &Socket{srv: s, conn: conn, br: br, fd: -1, closedFrame: make(chan struct{}), preamble: preamble}
	if sc, ok := conn.(syscall.Conn); ok {
		sock.raw, _ = sc.SyscallConn()
	}
	if s.poller != nil {
		sock.fd = fdOf(sock)
	}
	sock.lastRead.Store(time.Now().UnixNano())
	sock.w = s.writers[nextWriter.Add(1)%uint64(len(s.writers))]
	sock.w.add(sock)
	s.metrics.sockets.Inc()
	s.live.Add(1)
	return sock
}

// RemoteAddr returns the peer address.
func (s *Socket) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// Bind sets the source of queued messages and wakes the writer.
func (s *Socket) Bind(src core.Source) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
	s.Wake()
}

// SetKeepAlive makes the writer's periodic ping sweep send frame as a data
// frame (binary or text) instead of a WebSocket ping: clients such as a
// browser's SignalR hub connection cannot see ping frames and need a
// protocol-level message to stay alive. A nil frame restores pings.
func (s *Socket) SetKeepAlive(frame []byte, binary bool) {
	op := ws.OpText
	if binary {
		op = ws.OpBinary
	}
	s.mu.Lock()
	s.keepAlive, s.keepAliveOp = frame, op
	s.mu.Unlock()
}

// Wake implements core.Link.
func (s *Socket) Wake() {
	if s.scheduled.CompareAndSwap(false, true) {
		s.w.schedule(s)
	}
}

// Close implements core.Link: what is queued is written, then a close frame.
func (s *Socket) Close(code int, reason string) {
	s.mu.Lock()
	if !s.closing {
		s.closing, s.closeCode, s.closeReason = true, code, reason
	}
	s.mu.Unlock()
	s.Wake()
}

// Serve passes client frames to h until the socket ends. With the poller, an
// idle socket holds no goroutine: reading runs in bursts while input is
// buffered. Without it, one goroutine reads for the socket's lifetime.
func (s *Socket) Serve(h Handler) {
	s.h = h
	s.mu.Lock()
	bound, held := s.src != nil, s.preamble != nil
	s.mu.Unlock()
	if !bound && s.corked.CompareAndSwap(true, false) {
		uncork(s.conn) // no first frames to wait for: the client waits for the 101
	}
	if !bound && held {
		s.Wake() // no first frames to wait for: the writer sends the 101
	}
	if s.fd < 0 || (s.br != nil && s.br.Buffered() > 0) {
		go s.burst()
		return
	}
	s.park()
}

// burst reads until the input is consumed (then parks) or the socket ends.
func (s *Socket) burst() {
	if s.br == nil {
		s.br = readerPool.Get().(*bufio.Reader)
		s.br.Reset(s.conn)
	}
	reason, parked := s.read(s.h, s.fd >= 0)
	if parked {
		if s.br.Size() == readerSize {
			s.br.Reset(nil)
			readerPool.Put(s.br)
		}
		s.br = nil
		s.park()
		return
	}
	s.finish(reason)
}

// park hands the socket to the poller; the next input starts a burst.
func (s *Socket) park() {
	s.mu.Lock()
	if s.dead {
		reason := s.killReason
		s.mu.Unlock()
		s.finish(reason)
		return
	}
	s.parked = true
	s.mu.Unlock()
	if err := s.srv.poller.arm(s); err != nil {
		s.unpark() // cannot poll: read on a goroutine instead
	}
}

// unpark starts a burst for a parked socket; the poller calls it.
func (s *Socket) unpark() {
	s.mu.Lock()
	if !s.parked {
		s.mu.Unlock()
		return
	}
	s.parked = false
	s.mu.Unlock()
	go s.burst()
}

// finish ends the read side: it lets the writer send a pending close frame,
// drops the socket and tells the handler, once.
func (s *Socket) finish(reason string) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing { // let the writer send the close frame first
		t := time.NewTimer(s.srv.opts.WriteTimeout)
		select {
		case <-s.closedFrame:
		case <-t.C:
		}
		t.Stop()
	}
	s.kill(reason)
	s.br = nil
	s.h.HandleClose(reason)
}

// readerSize is the read buffer of a burst, returned to readerPool on park.
const readerSize = 512

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// read runs until the socket fails or closes and returns why; with park set
// it also returns, parked, once a whole message or control frame has been
// handled and no input is buffered. A message only holds memory for the bytes
// that have arrived (see appendPayload), so the goroutine of a socket waiting
// in the middle of a message holds its stack, the small reader and what the
// client actually sent.
func (s *Socket) read(h Handler, park bool) (reason string, parked bool) {
	max := int64(s.srv.opts.MaxMessageBytes)
	var msg []byte
	var msgOp ws.OpCode
	inMessage := false
	var wait waiting
	defer wait.done(s.srv.metrics)
	for {
		hd, err := ws.ReadHeaderBuffer(s.br, s.hdr[:])
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) {
				return s.protocolError(1002, "bad_length", "frame length has its most significant bit set"), false
			}
			return readErrReason(err), false
		}
		s.lastRead.Store(time.Now().UnixNano())
		switch {
		case hd.Rsv != 0:
			return s.protocolError(1002, "reserved_bits", "reserved bits set"), false
		case !hd.Masked:
			return s.protocolError(1002, "unmasked", "client frames must be masked"), false
		case hd.OpCode.IsReserved():
			return s.protocolError(1002, "reserved_opcode", "reserved opcode"), false
		case hd.OpCode.IsControl() && (hd.Length > 125 || !hd.Fin):
			return s.protocolError(1002, "bad_control_frame", "invalid control frame"), false
		}
		if hd.OpCode.IsControl() {
			payload := make([]byte, hd.Length)
			if _, err := io.ReadFull(s.br, payload); err != nil {
				return readErrReason(err), false
			}
			ws.Cipher(payload, hd.Mask, 0)
			switch hd.OpCode {
			case ws.OpPing:
				s.queuePong(payload)
			case ws.OpClose:
				if kind, why := badClosePayload(payload); kind != "" {
					return s.protocolError(1002, kind, why), false
				}
				code, text := ws.ParseCloseFrameData(payload)
				echo := int(code)
				if code == 0 {
					echo = 1000
				}
				s.Close(echo, "")
				s.clientClosed.Store(true)
				return closeReason(code, text), false
			}
			if park && !inMessage && s.br.Buffered() == 0 {
				return "", true
			}
			continue
		}
		switch {
		case hd.OpCode == ws.OpContinuation && !inMessage:
			return s.protocolError(1002, "orphan_continuation", "continuation without a message"), false
		case hd.OpCode != ws.OpContinuation && inMessage:
			return s.protocolError(1002, "interleaved_message", "new message inside a fragmented one"), false
		case int64(len(msg))+hd.Length > max:
			return s.protocolError(1009, "too_big", "message exceeds "+strconv.FormatInt(max, 10)+" bytes"), false
		}
		if !inMessage {
			msgOp, msg = hd.OpCode, nil
		}
		if msg, err = s.appendPayload(msg, int(hd.Length), hd.Mask, &wait); err != nil {
			return readErrReason(err), false
		}
		if !hd.Fin {
			inMessage = true
			wait.track(s.srv.metrics, cap(msg)) // held while the next fragment comes
			continue
		}
		inMessage = false
		wait.done(s.srv.metrics)
		binary := msgOp == ws.OpBinary
		if !binary && !utf8.Valid(msg) {
			return s.protocolError(1007, "bad_utf8", "text message is not valid UTF-8"), false
		}
		s.srv.metrics.framesIn.Inc()
		s.srv.metrics.bytesIn.Add(float64(len(msg)))
		if err := h.HandleMessage(msg, binary); err != nil {
			var ce *CloseError
			if errors.As(err, &ce) {
				return s.protocolError(ce.Code, "handler", ce.Reason), false
			}
			return s.protocolError(1011, "handler", err.Error()), false
		}
		msg = nil
		if park && s.br.Buffered() == 0 {
			return "", true
		}
	}
}

// minGrow is the least a message buffer grows by once bytes have arrived.
const minGrow = readerSize

// appendPayload reads the n-byte payload of a data frame onto msg and unmasks
// it. The buffer grows as bytes arrive, not as the header declares: nothing
// is allocated before the first byte of the message comes, and then the
// buffer grows, up to the end of the frame, by the largest of what the
// message has received so far, what has arrived and waits to be read (in the
// reader and in the kernel's receive buffer) and minGrow. A partly read
// message so holds at most twice the bytes the host has received for it, plus
// minGrow, and a client that declares a large frame and sends little costs
// little. A message that has arrived whole takes one allocation of its size.
func (s *Socket) appendPayload(msg []byte, n int, mask [4]byte, wait *waiting) ([]byte, error) {
	start, end := len(msg), len(msg)+n
	for len(msg) < end {
		buffered := s.br.Buffered()
		if wait.on || buffered < end-len(msg) {
			wait.track(s.srv.metrics, cap(msg)) // the rest may not be here yet
		}
		if len(msg) == cap(msg) {
			if len(msg) == 0 && buffered == 0 {
				if _, err := s.br.Peek(1); err != nil { // wait for the first byte
					return msg, err
				}
				buffered = s.br.Buffered()
			}
			arrived := buffered
			if arrived < end-len(msg) {
				arrived += s.inKernel()
			}
			grown := make([]byte, len(msg), len(msg)+min(max(len(msg), arrived, minGrow), end-len(msg)))
			copy(grown, msg)
			msg = grown
			if wait.on {
				wait.track(s.srv.metrics, cap(msg))
			}
		}
		k, err := s.br.Read(msg[len(msg):min(cap(msg), end)])
		msg = msg[:len(msg)+k]
		if err != nil && len(msg) < end {
			return msg, err
		}
	}
	ws.Cipher(msg[start:], mask, 0)
	return msg, nil
}

// waiting accounts, in the partial-message gauges, for the message a socket
// holds while it waits for the rest of it.
type waiting struct {
	on    bool
	bytes int // buffer capacity counted in the gauge
}

func (w *waiting) track(m *metrics, capacity int) {
	if !w.on {
		w.on = true
		m.partialMessages.Inc()
	}
	if capacity != w.bytes {
		m.partialBytes.Add(float64(capacity - w.bytes))
		w.bytes = capacity
	}
}

func (w *waiting) done(m *metrics) {
	if !w.on {
		return
	}
	m.partialMessages.Dec()
	m.partialBytes.Sub(float64(w.bytes))
	*w = waiting{}
}

// badClosePayload checks a client's close frame payload against RFC 6455
// §5.5.1 and §7.4: empty, or a status code a peer may send followed by a UTF-8
// reason. It returns the metric reason and a description, or "" if it is valid.
func badClosePayload(p []byte) (kind, why string) {
	if len(p) == 0 {
		return "", ""
	}
	if len(p) == 1 {
		return "bad_close_payload", "close frame payload of one byte"
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return "bad_close_code", "invalid close code " + strconv.Itoa(code)
	}
	if !utf8.Valid(p[2:]) {
		return "bad_close_reason", "close reason is not valid UTF-8"
	}
	return "", ""
}

// validCloseCode reports whether a peer may send code in a close frame: the
// codes RFC 6455 §7.4.1 defines for sending and those IANA has registered
// since (1012-1014), or the ranges for libraries (3000-3999) and applications
// (4000-4999). 1004 is reserved, 1005, 1006 and 1015 must never be sent, and
// the rest of 1000-2999 is unassigned.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ClosedByClient reports whether the socket ended with a close frame from the
// client: a deliberate goodbye, not a dropped connection.
func (s *Socket) ClosedByClient() bool { return s.clientClosed.Load() }

func closeReason(code ws.StatusCode, text string) string {
	r := "client closed the connection"
	if code != 0 {
		r += " (" + strconv.Itoa(int(code)) + ")"
	}
	if text != "" {
		r += ": " + text
	}
	return r
}

// protocolError closes the socket with code and reason, counted under kind
// (one of a few fixed words, never client text).
func (s *Socket) protocolError(code int, kind, reason string) string {
	s.srv.metrics.badFrames.WithLabelValues(strconv.Itoa(code), kind).Inc()
	s.Close(code, reason)
	return reason
}

func readErrReason(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return "connection closed"
	}
	return "read error: " + err.Error()
}

func (s *Socket) queuePong(payload []byte) {
	s.mu.Lock()
	if len(s.pongs) < 8 {
		s.pongs = append(s.pongs, payload)
	}
	s.mu.Unlock()
	s.Wake()
}

// kill closes the TCP connection at once, for reason. A reading burst then
// ends on its own; a parked socket has no reader, so kill finishes it.
func (s *Socket) kill(reason string) {
	s.mu.Lock()
	dead, parked := s.dead, s.parked
	s.dead, s.parked = true, false
	if !dead {
		s.killReason = reason
	}
	s.mu.Unlock()
	if dead {
		return
	}
	close(s.closedFrame) // the close frame went out, or never will
	if s.fd >= 0 {
		s.srv.poller.remove(s)
	}
	s.conn.Close()
	s.w.remove(s)
	s.srv.metrics.sockets.Dec()
	s.srv.live.Add(-1)
	if parked {
		go s.h.HandleClose(reason)
	}
}

// deadline for the read loop is enforced by the writer's idle sweep.
func (s *Socket) idleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, s.lastRead.Load()))
}
