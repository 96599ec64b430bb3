package history

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkIdempotencyBegin measures a send's use of the index: Begin and
// Commit of a fresh key while 200,000 keys (the default bound) are held, so
// every commit also drops the oldest. Run it with -benchmem: allocs/op is the
// cost a send adds for the garbage collector.
func BenchmarkIdempotencyBegin(b *testing.B) {
	const held = 200_000
	x := NewIdempotency(time.Hour, held)
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("payload"))
	epoch := FormatEpoch(0x1234_5678_9abc_def0)
	// Keys made before the loop, so that the loop measures the index only;
	// a key comes round again long after it left the index.
	keys := make([]string, 1<<20)
	for i := range keys {
		keys[i] = "orders/0/" + strconv.Itoa(i)
	}
	next := 0
	send := func() {
		k := keys[next&(len(keys)-1)]
		next++
		_, replayed, c, err := x.Begin(ctx, "orders", k, fp)
		if err != nil || replayed {
			b.Fatalf("Begin %q: replayed %v err %v", k, replayed, err)
		}
		c.Commit(Result{Offset: uint64(next), Epoch: epoch})
	}
	for range held {
		send()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		send()
	}
}
