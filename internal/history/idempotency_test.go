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

// TestIdempotencyNamespace: a namespace's view keeps its keys apart from the default
// namespace's and finds the keys restored from its streams ("signalr/<hub>" in the log).
func TestIdempotencyNamespace(t *testing.T) {
	x := NewIdempotency(time.Minute, 100)
	sr := x.Namespace("signalr")
	ctx := context.Background()
	fpA, fpB := Fingerprint("group", "g", 1, []byte("a")), Fingerprint("group", "g", 1, []byte("b"))

	_, _, c, err := x.Begin(ctx, "chat", "k", fpA)
	if err != nil {
		t.Fatal(err)
	}
	c.Commit(Result{Offset: 1, Epoch: "wps"})
	// The same key and hub with another request: its own send in the namespace, not a reuse.
	res, replayed, c, err := sr.Begin(ctx, "chat", "k", fpB)
	if err != nil || replayed {
		t.Fatalf("namespaced Begin: %+v replayed %v err %v, want a claim", res, replayed, err)
	}
	c.Commit(Result{Offset: 1, Epoch: "sr"})
	if res, replayed, _, _ := sr.Begin(ctx, "chat", "k", fpB); !replayed || res.Epoch != "sr" {
		t.Errorf("namespaced retry: %+v replayed %v", res, replayed)
	}
	if res, replayed, _, _ := x.Begin(ctx, "chat", "k", fpA); !replayed || res.Epoch != "wps" {
		t.Errorf("default retry: %+v replayed %v", res, replayed)
	}
	if n := sr.Len(); n != 2 {
		t.Errorf("Len %d, want 2 (one index)", n)
	}
	// A key the log restores for a SignalR stream is found by the SignalR view only.
	x.restore("signalr/chat", "r", fpA, Result{Offset: 5, Epoch: "e"}, time.Now())
	if res, replayed, _, _ := sr.Begin(ctx, "chat", "r", fpA); !replayed || res.Offset != 5 {
		t.Errorf("restored key in its namespace: %+v replayed %v", res, replayed)
	}
	if _, replayed, c, _ := x.Begin(ctx, "chat", "r", fpA); replayed || c == nil {
		t.Error("restored SignalR key found in the default namespace")
	}
}
