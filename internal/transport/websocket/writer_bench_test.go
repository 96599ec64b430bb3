package websocket

import (
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
)

// BenchmarkFlush measures one writer pass over one socket with a batch of
// small messages queued (the coalesced write of the fan-out's hot path):
// drain, frame, one writev. The client side reads and discards.
func BenchmarkFlush(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(itoa(n), func(b *testing.B) {
			e := newEnv(b, Options{})
			c, p := e.dial(b, 0)
			go io.Copy(io.Discard, c.r)
			time.Sleep(50 * time.Millisecond) // the 101 and first wake are done
			body := make([]byte, 64)
			items := make([]core.Item, n)
			for i := range items {
				items[i] = benchItem(body)
			}
			// A writer of the benchmark's own, whose goroutine does not run:
			// the loop is its only flusher (a wake, e.g. from the slow
			// lane, only schedules).
			w := newWriter(e.srv)
			p.sock.w = w
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for p.sock.slow.Load() {
					runtime.Gosched() // the slow lane is writing a stalled batch
				}
				p.src.push(items...)
				w.flush(p.sock)
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
