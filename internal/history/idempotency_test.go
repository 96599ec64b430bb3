package history

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
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

// TestIdempotencyEpochRoundTrip: a replay answers the epoch committed, byte for byte,
// whether it is the embedded log's (16 hex digits, kept as a number), "" or a cluster's
// other string (kept aside), through Commit and through restore; an entry's epoch kept
// aside leaves with the entry.
func TestIdempotencyEpochRoundTrip(t *testing.T) {
	epochs := []string{
		"", FormatEpoch(1), FormatEpoch(0x0123456789abcdef), FormatEpoch(^uint64(0)),
		"0000000000000000", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
		"zzzzzzzzzzzzzzzz", "e", "wps", "a1b2c3d4-e5f6-0718",
	}
	x := NewIdempotency(time.Hour, 2*len(epochs)) // each epoch committed under h and restored under r
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))
	for i, e := range epochs {
		_, _, c, err := x.Begin(ctx, "h", fmt.Sprint("k", i), fp)
		if err != nil || c == nil {
			t.Fatalf("Begin k%d: claim %v err %v", i, c, err)
		}
		c.Commit(Result{Offset: uint64(i + 1), Epoch: e})
		x.restore("r", fmt.Sprint("k", i), fp, Result{Offset: uint64(i + 1), Epoch: e}, time.Now())
	}
	for i, e := range epochs {
		want := Result{Offset: uint64(i + 1), Epoch: e}
		if res, replayed, _, err := x.Begin(ctx, "h", fmt.Sprint("k", i), fp); !replayed || err != nil || res != want {
			t.Errorf("committed epoch %q: got %+v replayed %v err %v, want %+v", e, res, replayed, err, want)
		}
		if res, replayed, _, err := x.Begin(ctx, "r", fmt.Sprint("k", i), fp); !replayed || err != nil || res != want {
			t.Errorf("restored epoch %q: got %+v replayed %v err %v, want %+v", e, res, replayed, err, want)
		}
	}
	// The bound drops every key above (restored and committed); their epochs go too.
	for i := range 2 * len(epochs) {
		_, _, c, _ := x.Begin(ctx, "other", fmt.Sprint("k", i), fp)
		c.Commit(Result{Epoch: FormatEpoch(7)})
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if n := len(x.epochs); n != 0 {
		t.Errorf("%d epochs kept aside after their keys left the index", n)
	}
}

// TestIdempotencyWaiter: a second Begin of a key in progress waits, and is released
// by the first send's Commit (with its result) or Abort (with the key to itself).
func TestIdempotencyWaiter(t *testing.T) {
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))
	type begun struct {
		res      Result
		replayed bool
		c        *Claim
		err      error
	}
	start := func(t *testing.T) (*Idempotency, *Claim, chan begun) {
		x := NewIdempotency(time.Minute, 100)
		_, _, first, err := x.Begin(ctx, "h", "k", fp)
		if err != nil || first == nil {
			t.Fatalf("first Begin: claim %v err %v", first, err)
		}
		if _, _, _, err := x.Begin(ctx, "h", "k", fp+1); !errors.Is(err, ErrKeyReused) {
			t.Errorf("another request under a key in progress: %v", err)
		}
		second := make(chan begun, 1)
		go func() {
			var b begun
			b.res, b.replayed, b.c, b.err = x.Begin(ctx, "h", "k", fp)
			second <- b
		}()
		// Wait until the second Begin waits on the first send.
		for {
			x.mu.Lock()
			waiting := first.wait != nil
			x.mu.Unlock()
			if waiting {
				break
			}
			runtime.Gosched()
		}
		return x, first, second
	}
	t.Run("commit", func(t *testing.T) {
		_, first, second := start(t)
		want := Result{Offset: 3, Epoch: "cluster-epoch"}
		first.Commit(want)
		if b := <-second; b.err != nil || !b.replayed || b.res != want || b.c != nil {
			t.Errorf("waiter after Commit: %+v, want replay of %+v", b, want)
		}
	})
	t.Run("abort", func(t *testing.T) {
		x, first, second := start(t)
		first.Abort()
		b := <-second
		if b.err != nil || b.replayed || b.c == nil {
			t.Fatalf("waiter after Abort: %+v, want a claim", b)
		}
		b.c.Commit(Result{Offset: 4})
		if res, replayed, _, _ := x.Begin(ctx, "h", "k", fp); !replayed || res.Offset != 4 {
			t.Errorf("after the retry's commit: %+v replayed %v", res, replayed)
		}
	})
}

// TestIdempotencyKeyDelimited: hub and key are hashed length-delimited, so moving the
// boundary between them makes another key; the namespace prefix is part of the hub.
func TestIdempotencyKeyDelimited(t *testing.T) {
	x := NewIdempotency(time.Minute, 100)
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))
	for _, p := range [][2][2]string{
		{{"ab", "c"}, {"a", "bc"}},
		{{"abc", ""}, {"", "abc"}},
		{{"ab", ""}, {"a", "b"}},
	} {
		_, _, c, _ := x.Begin(ctx, p[0][0], p[0][1], fp)
		c.Commit(Result{Offset: 1})
		if res, replayed, c, err := x.Begin(ctx, p[1][0], p[1][1], fp); replayed || err != nil || c == nil {
			t.Errorf("hub %q key %q answered as hub %q key %q: %+v replayed %v err %v", p[1][0], p[1][1], p[0][0], p[0][1], res, replayed, err)
		} else {
			c.Abort()
		}
	}
	// The view of namespace "n" names hub h as the log does, "n/h".
	_, _, c, _ := x.Namespace("n").Begin(ctx, "h", "k", fp)
	c.Commit(Result{Offset: 2})
	if res, replayed, _, _ := x.Begin(ctx, "n/h", "k", fp); !replayed || res.Offset != 2 {
		t.Errorf("hub n/h of the default view: %+v replayed %v, want the namespace's key", res, replayed)
	}
}

// TestIdempotencyExpiryOldestFirst: the bound on keys and the window drop the oldest
// completed keys first, never a key in progress; Len counts both kinds; restore skips
// a key in progress.
func TestIdempotencyExpiryOldestFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	x := NewIdempotency(time.Minute, 3)
	x.now = func() time.Time { return now }
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))
	commit := func(key string, off uint64) {
		t.Helper()
		_, replayed, c, err := x.Begin(ctx, "h", key, fp)
		if err != nil || replayed {
			t.Fatalf("Begin %s: replayed %v err %v", key, replayed, err)
		}
		c.Commit(Result{Offset: off})
	}
	held := func(key string) bool {
		t.Helper()
		_, replayed, c, err := x.Begin(ctx, "h", key, fp)
		if err != nil {
			t.Fatalf("Begin %s: %v", key, err)
		}
		if c != nil {
			c.Abort()
		}
		return replayed
	}
	_, _, inProgress, _ := x.Begin(ctx, "h", "p", fp)
	x.restore("h", "p", fp, Result{Offset: 99}, now)
	for i, k := range []string{"k1", "k2", "k3", "k4", "k5"} {
		commit(k, uint64(i+1))
		now = now.Add(10 * time.Second)
	}
	// Bound: k1 and k2 went, the oldest.
	for k, want := range map[string]bool{"k3": true, "k4": true, "k5": true} {
		if held(k) != want {
			t.Errorf("after the bound: %s held %v, want %v", k, !want, want)
		}
	}
	if n := x.Len(); n != 4 {
		t.Errorf("Len %d, want 4 (3 completed, 1 in progress)", n)
	}
	for _, k := range []string{"k1", "k2"} {
		if held(k) {
			t.Errorf("after the bound: %s held, want dropped", k)
		}
	}
	// Window: k3 completed at 1020 s, k4 at 1030 s, k5 at 1040 s; at 1085 s k3 is
	// beyond the minute and goes, k4 and k5 stay.
	now = time.Unix(1085, 0)
	if held("k3") || !held("k4") || !held("k5") {
		t.Error("at 1085 s: want k3 dropped, k4 and k5 held")
	}
	now = time.Unix(1095, 0)
	if held("k4") || !held("k5") {
		t.Error("at 1095 s: want k4 dropped, k5 held")
	}
	// The send in progress outlives the window and the bound, and restore left it alone.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := x.Begin(cctx, "h", "p", fp); !errors.Is(err, context.Canceled) {
		t.Errorf("Begin of the key in progress: %v, want to wait", err)
	}
	inProgress.Commit(Result{Offset: 7})
	if res, replayed, _, _ := x.Begin(ctx, "h", "p", fp); !replayed || res.Offset != 7 {
		t.Errorf("key in progress after Commit: %+v replayed %v, want offset 7", res, replayed)
	}
}

// TestIdempotencyBeginAllocs: Begin and Commit of a fresh key allocate the Claim
// only (averaged: the maps and the ring grow rarely once the index is full).
func TestIdempotencyBeginAllocs(t *testing.T) {
	x := NewIdempotency(time.Hour, 100)
	ctx := context.Background()
	fp := Fingerprint("group", "g", 1, []byte("a"))
	epoch := FormatEpoch(42)
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	next := 0
	send := func() {
		_, _, c, err := x.Begin(ctx, "h", keys[next], fp)
		if err != nil || c == nil {
			t.Fatalf("Begin %s: claim %v err %v", keys[next], c, err)
		}
		c.Commit(Result{Offset: uint64(next), Epoch: epoch})
		next++
	}
	for range 1000 {
		send()
	}
	if n := testing.AllocsPerRun(1000, send); n > 1 {
		t.Errorf("Begin+Commit of a fresh key: %v allocations, want at most 1 (the Claim)", n)
	}
}

// TestIdempotencyEntriesHoldNoPointers: the completed keys and their order of expiry,
// up to history.idempotency_keys of them, are nothing the garbage collector must mark.
func TestIdempotencyEntriesHoldNoPointers(t *testing.T) {
	var pointerful func(reflect.Type) bool
	pointerful = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
			return false
		case reflect.Array:
			return pointerful(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if pointerful(ty.Field(i).Type) {
					return true
				}
			}
			return false
		}
		return true
	}
	x := NewIdempotency(time.Minute, 1).idemIndex
	for _, ty := range []reflect.Type{reflect.TypeOf(x.done).Key(), reflect.TypeOf(x.done).Elem(), reflect.TypeOf(x.order.buf).Elem()} {
		if pointerful(ty) {
			t.Errorf("%v holds pointers", ty)
		}
	}
}
