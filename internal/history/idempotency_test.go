package history

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestIdempotencyConcurrentSameKey(t *testing.T) {
	x := NewIdempotency(time.Minute, 100)
	fp := Fingerprint("group", "g", 1, []byte("hello"))
	var runs atomic.Int32
	var wg sync.WaitGroup
	results := make([]Result, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, replayed, c, err := x.Begin(context.Background(), "h", "k", fp)
			if err != nil {
				t.Error(err)
				return
			}
			if !replayed {
				runs.Add(1)
				res = Result{Offset: 7, Epoch: "e"}
				c.Commit(res)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	if runs.Load() != 1 {
		t.Errorf("the send ran %d times, want once", runs.Load())
	}
	for i, r := range results {
		if r != (Result{Offset: 7, Epoch: "e"}) {
			t.Errorf("caller %d got %+v", i, r)
		}
	}
}

func TestIdempotencyCases(t *testing.T) {
	now := time.Unix(1000, 0)
	x := NewIdempotency(time.Minute, 2)
	x.now = func() time.Time { return now }
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))

	// An aborted send gives the key up.
	_, _, c, _ := x.Begin(ctx, "h", "k1", fp)
	c.Abort()
	if _, replayed, c, err := x.Begin(ctx, "h", "k1", fp); err != nil || replayed {
		t.Fatalf("after abort: replayed=%v err=%v", replayed, err)
	} else {
		c.Commit(Result{Offset: 1})
	}
	// Another request under the same key.
	if _, _, _, err := x.Begin(ctx, "h", "k1", Fingerprint("group", "g", 1, []byte("b"))); !errors.Is(err, ErrKeyReused) {
		t.Errorf("reused key: %v", err)
	}
	// Keys are per hub.
	if _, replayed, c, _ := x.Begin(ctx, "other", "k1", fp); replayed {
		t.Error("key shared across hubs")
	} else {
		c.Commit(Result{})
	}
	// A waiter gives up with its context.
	_, _, held, _ := x.Begin(ctx, "h", "k2", fp)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := x.Begin(cctx, "h", "k2", fp); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with a canceled context: %v", err)
	}
	held.Commit(Result{Offset: 2})
	// Expiry after the window, and the bound on keys.
	now = now.Add(2 * time.Minute)
	if _, replayed, c, _ := x.Begin(ctx, "h", "k1", fp); replayed {
		t.Error("key remembered beyond the window")
	} else {
		c.Commit(Result{Offset: 3})
	}
	for _, k := range []string{"a", "b", "c"} {
		_, _, c, _ := x.Begin(ctx, "h", k, fp)
		c.Commit(Result{})
	}
	if n := x.Len(); n > 2 {
		t.Errorf("%d keys held, bound is 2", n)
	}
	// Restored keys outside the window are ignored.
	x.restore("h", "old", fp, Result{Offset: 9}, now.Add(-time.Hour))
	if _, replayed, _, _ := x.Begin(ctx, "h", "old", fp); replayed {
		t.Error("expired key restored")
	}
}
