package websocket

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// frameHeader is a masked client frame header declaring n payload bytes, with
// the mask rawFrame uses.
func frameHeader(fin bool, op ws.OpCode, n int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	b := binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	return append(b, 1, 2, 3, 4)
}

// masked masks payload with rawFrame's mask, as the bytes that follow
// frameHeader; offset is where payload starts in the frame.
func masked(payload []byte, offset int) []byte {
	p := append([]byte(nil), payload...)
	ws.Cipher(p, [4]byte{1, 2, 3, 4}, offset)
	return p
}

// memAfterGC returns the bytes of live heap objects and of goroutine stacks.
func memAfterGC() (heap, stacks uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.StackInuse
}

// TestHeaderAloneAllocatesNothing is finding 3 of issue 12: a frame header
// declaring 1 MiB made the server allocate 1 MiB at once and keep it while the
// client sent nothing more. 200 such sockets must cost far less than 200 MiB:
// half send only a header, half a 100-byte first fragment and then only the
// header of a continuation frame declaring the rest of 1 MiB.
func TestHeaderAloneAllocatesNothing(t *testing.T) {
	const n = 200
	e := newEnv(t, Options{MaxMessageBytes: 2 << 20})
	before, stacksBefore := memAfterGC()
	clients := make([]*client, n)
	peers := make([]*peer, n)
	lastRead := make([]int64, n) // for the fragmented half: before the continuation header
	first := bytes.Repeat([]byte{'a'}, 100)
	for i := range clients {
		c, p := e.dial(t, 0)
		clients[i], peers[i] = c, p
		if i%2 == 0 {
			c.writeRaw(t, frameHeader(true, ws.OpBinary, 1<<20))
			continue
		}
		c.writeRaw(t, rawFrame(false, ws.OpBinary, first, true))
		c.write(t, ws.NewPingFrame(nil))
		if h, _ := c.readFrame(t); h.OpCode != ws.OpPong {
			t.Fatalf("got %v, want the pong that says the first fragment was read", h.OpCode)
		}
		lastRead[i] = p.sock.lastRead.Load()
		c.writeRaw(t, frameHeader(true, ws.OpContinuation, 1<<20-len(first)))
	}
	eventually.True(t, "the server to read every header", 10*time.Second, func() bool {
		for i := 1; i < n; i += 2 {
			if peers[i].sock.lastRead.Load() == lastRead[i] {
				return false
			}
		}
		return metrictest.Value(t, e.reg, "switchboard_websocket_partial_messages") == n
	})
	after, stacksAfter := memAfterGC()
	grown := int64(after) - int64(before)
	t.Logf("%d sockets that sent a header declaring 1 MiB: heap %+d bytes, goroutine stacks %+d bytes (both ends)",
		n, grown, int64(stacksAfter)-int64(stacksBefore))
	if grown > 20<<20 {
		t.Errorf("%d headers declaring 1 MiB each grew the heap by %d MiB, want < 20 MiB", n, grown>>20)
	}
	// Only the fragmented half has received bytes: 100 each.
	if held, most := metrictest.Value(t, e.reg, "switchboard_websocket_partial_message_bytes"), n/2*(2*len(first)+minGrow); held > float64(most) {
		t.Errorf("partial_message_bytes = %v, want at most %d", held, most)
	}
	runtime.KeepAlive(clients)
}

// TestSlowMessageArrivesIntact sends a 1 MiB message a piece at a time, in one
// frame and in fragments, and checks it arrives whole while the buffer held
// for it follows the bytes received.
func TestSlowMessageArrivesIntact(t *testing.T) {
	t.Parallel()
	body := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	// Piece sizes: tiny, around the reader's 512 bytes, and large.
	pieces := func() []int {
		var sizes []int
		for left, i := len(body), 0; left > 0; i++ {
			k := min(left, []int{1, 7, 511, 512, 513, 3000, 40 << 10, 200 << 10}[i%8])
			sizes = append(sizes, k)
			left -= k
		}
		return sizes
	}()

	t.Run("one frame", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{MaxMessageBytes: 1 << 20})
		c, p := e.dial(t, 0)
		c.conn.(interface{ SetNoDelay(bool) error }).SetNoDelay(true)
		c.writeRaw(t, frameHeader(true, ws.OpBinary, len(body)))
		off := 0
		for _, k := range pieces {
			c.writeRaw(t, masked(body[off:off+k], off))
			off += k
			time.Sleep(time.Millisecond) // pacing, so that pieces arrive apart
		}
		m := p.handler.next(t)
		if !m.binary || !bytes.Equal([]byte(m.data), body) {
			t.Fatalf("got %d bytes (binary %v), not the 1 MiB sent", len(m.data), m.binary)
		}
		if held := metrictest.Value(t, e.reg, "switchboard_websocket_partial_messages"); held != 0 {
			t.Errorf("partial_messages = %v after the message arrived, want 0", held)
		}
	})

	t.Run("fragments", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Options{MaxMessageBytes: 1 << 20})
		c, p := e.dial(t, 0)
		off := 0
		for i, k := range pieces {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpBinary
			}
			fin := off+k == len(body)
			c.writeRaw(t, append(frameHeader(fin, op, k), masked(body[off:off+k], 0)...))
			off += k
			if fin {
				break
			}
			// A ping between fragments: its pong says the server has read
			// everything before it.
			c.write(t, ws.NewPingFrame([]byte{byte(i)}))
			if h, pl := c.readFrame(t); h.OpCode != ws.OpPong || len(pl) != 1 || pl[0] != byte(i) {
				t.Fatalf("after fragment %d: got %v %q, want pong %d", i, h.OpCode, pl, i)
			}
			held := metrictest.Value(t, e.reg, "switchboard_websocket_partial_message_bytes")
			if held < float64(off) || held > float64(2*off+minGrow) {
				t.Fatalf("after %d bytes received the message holds %v bytes, want between %d and %d", off, held, off, 2*off+minGrow)
			}
		}
		m := p.handler.next(t)
		if !m.binary || !bytes.Equal([]byte(m.data), body) {
			t.Fatalf("got %d bytes (binary %v), not the 1 MiB sent", len(m.data), m.binary)
		}
		if held := metrictest.Value(t, e.reg, "switchboard_websocket_partial_message_bytes"); held != 0 {
			t.Errorf("partial_message_bytes = %v after the message arrived, want 0", held)
		}
	})
}
