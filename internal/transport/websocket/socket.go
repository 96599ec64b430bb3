package websocket

import (
	"bufio"
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

// Source is where a socket's writer takes queued messages from: a core conn.
type Source interface {
	Drain(l core.Link, dst []core.Item) []core.Item
	AppendHead(dst []byte, seq uint64) []byte
}

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
	br   *bufio.Reader
	hdr  [ws.MaxHeaderSize]byte

	scheduled atomic.Bool
	lastRead  atomic.Int64 // unix nanoseconds

	// mu guards the fields below.
	mu          sync.Mutex
	src         Source
	closing     bool
	closeCode   int
	closeReason string
	pongs       [][]byte
	pingDue     bool
	dead        bool

	closedFrame chan struct{} // closed by kill: the close frame is out, or never will be

	// Writer state: owned by the writer goroutine, or by the slow lane
	// while slow is set.
	slow        atomic.Bool
	closeQueued bool // the close frame is written or pending
}

var _ core.Link = (*Socket)(nil)

var nextWriter atomic.Uint64

func newSocket(s *Server, conn net.Conn, br *bufio.Reader) *Socket {
	if br == nil || br.Buffered() == 0 {
		br = bufio.NewReaderSize(conn, 512) // the hijacked 4 KiB reader is empty: use a small one
	}
	sock := &Socket{srv: s, conn: conn, br: br, closedFrame: make(chan struct{})}
	if sc, ok := conn.(syscall.Conn); ok {
		sock.raw, _ = sc.SyscallConn()
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
func (s *Socket) Bind(src Source) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
	s.Wake()
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

// Serve reads client frames on a new goroutine and passes them to h until
// the socket ends.
func (s *Socket) Serve(h Handler) {
	go s.readLoop(h)
}

func (s *Socket) readLoop(h Handler) {
	reason := s.read(h)
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
	s.kill()
	h.HandleClose(reason)
}

// read runs until the socket fails or closes and returns why.
func (s *Socket) read(h Handler) string {
	max := int64(s.srv.opts.MaxMessageBytes)
	var msg []byte
	var msgOp ws.OpCode
	inMessage := false
	for {
		hd, err := ws.ReadHeaderBuffer(s.br, s.hdr[:])
		if err != nil {
			return readErrReason(err)
		}
		s.lastRead.Store(time.Now().UnixNano())
		switch {
		case hd.Rsv != 0:
			return s.protocolError(1002, "reserved bits set")
		case !hd.Masked:
			return s.protocolError(1002, "client frames must be masked")
		case hd.OpCode.IsReserved():
			return s.protocolError(1002, "reserved opcode")
		case hd.OpCode.IsControl() && (hd.Length > 125 || !hd.Fin):
			return s.protocolError(1002, "invalid control frame")
		}
		if hd.OpCode.IsControl() {
			payload := make([]byte, hd.Length)
			if _, err := io.ReadFull(s.br, payload); err != nil {
				return readErrReason(err)
			}
			ws.Cipher(payload, hd.Mask, 0)
			switch hd.OpCode {
			case ws.OpPing:
				s.queuePong(payload)
			case ws.OpClose:
				code, text := ws.ParseCloseFrameData(payload)
				echo := int(code)
				if code == 0 || code.IsNotUsed() || code.IsProtocolReserved() {
					echo = 1000
				}
				s.Close(echo, "")
				return "client closed (" + strconv.Itoa(int(code)) + " " + text + ")"
			}
			continue
		}
		switch {
		case hd.OpCode == ws.OpContinuation && !inMessage:
			return s.protocolError(1002, "continuation without a message")
		case hd.OpCode != ws.OpContinuation && inMessage:
			return s.protocolError(1002, "new message inside a fragmented one")
		case int64(len(msg))+hd.Length > max:
			return s.protocolError(1009, "message exceeds "+strconv.FormatInt(max, 10)+" bytes")
		}
		if !inMessage {
			msgOp, msg = hd.OpCode, nil
		}
		start := len(msg)
		msg = append(msg, make([]byte, hd.Length)...)
		if _, err := io.ReadFull(s.br, msg[start:]); err != nil {
			return readErrReason(err)
		}
		ws.Cipher(msg[start:], hd.Mask, 0)
		if !hd.Fin {
			inMessage = true
			continue
		}
		inMessage = false
		binary := msgOp == ws.OpBinary
		if !binary && !utf8.Valid(msg) {
			return s.protocolError(1007, "text message is not valid UTF-8")
		}
		s.srv.metrics.framesIn.Inc()
		s.srv.metrics.bytesIn.Add(float64(len(msg)))
		if err := h.HandleMessage(msg, binary); err != nil {
			var ce *CloseError
			if errors.As(err, &ce) {
				return s.protocolError(ce.Code, ce.Reason)
			}
			return s.protocolError(1011, err.Error())
		}
		msg = nil
	}
}

func (s *Socket) protocolError(code int, reason string) string {
	s.srv.metrics.badFrames.WithLabelValues(strconv.Itoa(code)).Inc()
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

// kill closes the TCP connection at once. The read goroutine then ends.
func (s *Socket) kill() {
	s.mu.Lock()
	dead := s.dead
	s.dead = true
	s.mu.Unlock()
	if dead {
		return
	}
	close(s.closedFrame) // the close frame went out, or never will
	s.conn.Close()
	s.w.remove(s)
	s.srv.metrics.sockets.Dec()
	s.srv.live.Add(-1)
}

// deadline for the read loop is enforced by the writer's idle sweep.
func (s *Socket) idleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, s.lastRead.Load()))
}
