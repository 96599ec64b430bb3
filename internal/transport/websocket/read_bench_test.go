package websocket

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// countHandler counts messages and signals when want have arrived.
type countHandler struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (h *countHandler) HandleMessage(data []byte, _ bool) error {
	if h.n.Add(1) == h.want {
		close(h.done)
	}
	return nil
}

func (h *countHandler) HandleClose(string) {}

// BenchmarkReadMessage measures the read path over loopback TCP (with the
// poller on Linux): one op is one client message read and handed to the
// handler. allocs/op counts the whole process, client writes included.
func BenchmarkReadMessage(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			e := newEnv(b, Options{MaxMessageBytes: 2 << 20})
			h := &countHandler{want: int64(b.N), done: make(chan struct{})}
			e.prepare = func(p *peer) { p.custom = h }
			c, _ := e.dial(b, 0)
			frame := rawFrame(true, ws.OpBinary, bytes.Repeat([]byte{'x'}, size), true)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			go func() {
				for i := 0; i < b.N; i++ {
					c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.conn.Write(frame); err != nil {
						return
					}
				}
			}()
			select {
			case <-h.done:
			case <-time.After(60 * time.Second):
				b.Fatalf("read %d of %d messages", h.n.Load(), b.N)
			}
		})
	}
}
