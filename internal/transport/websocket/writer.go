package websocket

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/latency"
)

// Coalescing: each wake-up of a writer drains everything its scheduled
// sockets have queued and writes it with one writev per socket. Small bodies
// are copied next to their headers; large ones are written from the shared
// encoded message without a copy.
const (
	copyBelow = 512                  // bodies shorter than this are copied into the batch buffer
	stallAt   = 5 * time.Millisecond // without raw writes: a write blocked this long moves the socket to the slow lane
)

// writer is one goroutine that writes for many sockets.
type writer struct {
	srv     *Server
	latency *latency.Shard // this writer's share of the delivery latency

	// mu guards the fields below.
	mu      sync.Mutex
	ready   []*Socket
	sockets map[*Socket]struct{}
	wake    chan struct{}

	// Goroutine-local buffers, reused across passes.
	items   []core.Item
	head    []byte
	scratch []byte
	spans   []span
	bufs    net.Buffers
	iov     []syscall.Iovec
}

// span is a piece of the next write: scratch[off:off+n] or body.
type span struct {
	off, n int
	body   []byte
}

func newWriter(s *Server) *writer {
	return &writer{srv: s, latency: s.metrics.latency.Shard("websocket"), sockets: make(map[*Socket]struct{}), wake: make(chan struct{}, 1)}
}

func (w *writer) add(s *Socket) {
	w.mu.Lock()
	w.sockets[s] = struct{}{}
	w.mu.Unlock()
}

func (w *writer) remove(s *Socket) {
	w.mu.Lock()
	delete(w.sockets, s)
	w.mu.Unlock()
}

func (w *writer) schedule(s *Socket) {
	w.mu.Lock()
	w.ready = append(w.ready, s)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run() {
	ping := time.NewTicker(w.srv.opts.PingInterval)
	defer ping.Stop()
	var batch []*Socket
	var lastPass time.Duration // how long the previous pass took
	var lastEnd time.Time
	gather := w.srv.opts.WriteGather
	for {
		select {
		case <-w.srv.stop:
			w.closeAll()
			return
		case now := <-ping.C:
			w.sweep(now)
		case <-w.wake:
		}
		// Under load, a writer waits before its next pass so that messages
		// arriving close together share one write per socket. The wait is
		// four times as long as the previous pass took, capped by the gather
		// window: a writer with little to do (short passes) adds almost no
		// latency, a saturated one (long passes) batches up to the full window.
		if gather > 0 {
			if wait := min(gather, 4*lastPass) - time.Since(lastEnd); wait > 0 {
				time.Sleep(wait)
			}
		}
		passStart := time.Now()
		w.mu.Lock()
		batch, w.ready = w.ready, batch[:0]
		w.mu.Unlock()
		for i, s := range batch {
			s.scheduled.Store(false)
			w.flush(s)
			batch[i] = nil
		}
		lastEnd = time.Now()
		lastPass = lastEnd.Sub(passStart)
	}
}

// sweep drops sockets silent for longer than the idle timeout and asks the
// others for a ping.
func (w *writer) sweep(now time.Time) {
	w.mu.Lock()
	var idle []*Socket
	for s := range w.sockets {
		if s.idleFor(now) > w.srv.opts.IdleTimeout {
			idle = append(idle, s)
			continue
		}
		s.mu.Lock()
		s.pingDue = true
		s.mu.Unlock()
		if s.scheduled.CompareAndSwap(false, true) {
			w.ready = append(w.ready, s)
		}
	}
	w.mu.Unlock()
	for _, s := range idle {
		w.srv.metrics.closes.WithLabelValues("idle").Inc()
		s.kill("idle timeout: nothing received")
	}
}

func (w *writer) closeAll() {
	w.mu.Lock()
	all := make([]*Socket, 0, len(w.sockets))
	for s := range w.sockets {
		all = append(all, s)
	}
	w.mu.Unlock()
	for _, s := range all {
		s.kill("server closing")
	}
}

// flush writes everything s has queued.
func (w *writer) flush(s *Socket) {
	if s.slow.Load() {
		return // its slow lane wakes it when done
	}
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	src, closing, code, reason := s.src, s.closing, s.closeCode, s.closeReason
	pongs, pingDue := s.pongs, s.pingDue
	keepAlive, keepAliveOp := s.keepAlive, s.keepAliveOp
	preamble := s.preamble
	s.pongs, s.pingDue, s.preamble = nil, false, nil
	s.mu.Unlock()

	w.scratch, w.spans = w.scratch[:0], w.spans[:0]
	if preamble != nil { // the 101 response, in the segment of the first frames
		w.scratch = append(w.scratch, preamble...)
		w.addScratch(0, len(preamble))
	}
	for _, p := range pongs {
		w.addControl(ws.OpPong, p)
	}
	frames := len(pongs)
	if pingDue && keepAlive == nil {
		w.addControl(ws.OpPing, nil)
		frames++
	}
	var oldest int64 // the Accepted of the oldest send in this write
	if src != nil {
		w.items = src.Drain(s, w.items[:0])
		for i := range w.items {
			it := &w.items[i]
			w.addMessage(src, it)
			it.Body = nil
			if it.Accepted != 0 && (oldest == 0 || it.Accepted < oldest) {
				oldest = it.Accepted
			}
		}
		frames += len(w.items)
	}
	if pingDue && keepAlive != nil {
		// After the drained messages, so that a keep-alive set right after
		// queueing a handshake answer never goes out before it.
		w.addControl(keepAliveOp, keepAlive)
		frames++
	}
	if closing && !s.closeQueued {
		body := ws.NewCloseFrameBody(ws.StatusCode(code), truncateReason(reason))
		w.addControl(ws.OpClose, body)
		frames++
		s.closeQueued = true
	}
	if len(w.spans) > 0 {
		// One observation per write, of its oldest send (sampling: the
		// others in the write waited no longer), once it is written.
		w.write(s, frames, oldest)
	}
	if s.corked.CompareAndSwap(true, false) {
		uncork(s.conn) // the 101 response and the first frames leave together
	}
}

// addMessage appends one data frame: header, per-conn head, body.
func (w *writer) addMessage(src core.Source, it *core.Item) {
	w.head = src.AppendHead(w.head[:0], it.Seq, it.Body)
	op := ws.OpText
	if it.Binary {
		op = ws.OpBinary
	}
	off := len(w.scratch)
	w.scratch = appendHeader(w.scratch, op, len(w.head)+len(it.Body))
	w.scratch = append(w.scratch, w.head...)
	if len(it.Body) < copyBelow {
		w.scratch = append(w.scratch, it.Body...)
		w.addScratch(off, len(w.scratch)-off)
		return
	}
	w.addScratch(off, len(w.scratch)-off)
	w.spans = append(w.spans, span{body: it.Body})
}

func (w *writer) addControl(op ws.OpCode, payload []byte) {
	off := len(w.scratch)
	w.scratch = appendHeader(w.scratch, op, len(payload))
	w.scratch = append(w.scratch, payload...)
	w.addScratch(off, len(w.scratch)-off)
}

// addScratch adds scratch[off:off+n], merging with the previous span when
// they touch.
func (w *writer) addScratch(off, n int) {
	if k := len(w.spans) - 1; k >= 0 && w.spans[k].body == nil && w.spans[k].off+w.spans[k].n == off {
		w.spans[k].n += n
		return
	}
	w.spans = append(w.spans, span{off: off, n: n})
}

// write sends the batch to s. A socket that does not take the whole batch
// at once keeps the rest and moves to the slow lane: a goroutine of its own
// that blocks on the write, so the writer goes on with the others. The
// delivery latency of the batch's oldest send (accepted; 0: none) is
// observed once the batch is written: at once, or when the slow lane is
// done (a write that fails is not observed: its sends were not delivered).
func (w *writer) write(s *Socket, frames int, accepted int64) {
	w.bufs = w.bufs[:0]
	for _, sp := range w.spans {
		b := sp.body
		if b == nil {
			b = w.scratch[sp.off : sp.off+sp.n]
		}
		w.bufs = append(w.bufs, b)
	}
	n, rest, err := w.tryWrite(s, w.bufs)
	w.srv.metrics.writes.Inc()
	w.srv.metrics.bytesOut.Add(float64(n))
	w.srv.metrics.framesOut.Add(float64(frames))
	for i := range w.spans {
		w.spans[i].body = nil
	}
	clear(w.bufs[:cap(w.bufs)])
	switch {
	case err != nil:
		w.srv.metrics.closes.WithLabelValues("write_error").Inc()
		s.kill("write error")
	case rest == nil:
		if accepted != 0 { // no clock read for writes without sends
			w.latency.Observe(accepted, time.Now())
		}
		if s.closeQueued {
			s.kill("closed by the server")
		}
	default:
		s.slow.Store(true)
		w.srv.wg.Add(1)
		go func() {
			defer w.srv.wg.Done()
			w.slowLane(s, rest, accepted)
		}()
	}
}

// slowLane writes pending to a socket that stalled, blocking as long as the
// client takes bytes at all; a client that takes none for WriteTimeout is
// dropped. Meanwhile the writer skips the socket, so what is queued stays in
// the core queue, whose byte bound then detects a slow consumer.
func (w *writer) slowLane(s *Socket, pending []byte, accepted int64) {
	w.srv.metrics.stalls.Inc()
	for len(pending) > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(w.srv.opts.WriteTimeout))
		n, err := s.conn.Write(pending)
		w.srv.metrics.writes.Inc()
		w.srv.metrics.bytesOut.Add(float64(n))
		pending = pending[n:]
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && n > 0:
			// The client is taking bytes, however slowly: keep going.
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.srv.metrics.closes.WithLabelValues("write_timeout").Inc()
			s.kill("write timeout: the client took no bytes")
			return
		default:
			w.srv.metrics.closes.WithLabelValues("write_error").Inc()
			s.kill("write error")
			return
		}
	}
	if accepted != 0 {
		w.latency.Observe(accepted, time.Now())
	}
	if s.closeQueued {
		s.kill("closed by the server")
		return
	}
	s.slow.Store(false)
	s.Wake() // write what queued meanwhile
}

// tryWriteBlocking writes bufs with a short deadline: the portable path,
// for connections without raw access.
func tryWriteBlocking(s *Socket, bufs net.Buffers) (n int64, rest []byte, err error) {
	s.conn.SetWriteDeadline(time.Now().Add(stallAt))
	n, err = bufs.WriteTo(s.conn)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, remainder(bufs, 0), nil
	}
	return n, nil, err
}

// remainder copies what of bufs follows the first skip bytes (the buffers
// are reused after the call).
func remainder(bufs [][]byte, skip int) []byte {
	size := -skip
	for _, b := range bufs {
		size += len(b)
	}
	if size <= 0 {
		return nil
	}
	rest := make([]byte, 0, size)
	for _, b := range bufs {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		rest = append(rest, b[skip:]...)
		skip = 0
	}
	return rest
}

// appendHeader appends an unmasked, final frame header.
func appendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n < 126:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
	}
}

// truncateReason keeps a close reason within the 123 bytes a close frame allows.
func truncateReason(r string) string {
	if len(r) <= 123 {
		return r
	}
	r = r[:123]
	for len(r) > 0 && r[len(r)-1]&0xc0 == 0x80 {
		r = r[:len(r)-1]
	}
	if len(r) > 0 && r[len(r)-1] >= 0xc0 {
		r = r[:len(r)-1]
	}
	return r
}
