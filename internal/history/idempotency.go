package history

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"
)

// ErrKeyReused is the answer to an Idempotency-Key seen before with a
// different request.
var ErrKeyReused = errors.New("history: idempotency key reused with a different request")

// Result is what a send with an idempotency key returned the first time.
type Result struct {
	Offset uint64 // 0 when the target keeps no history
	Epoch  string
}

// Idempotency maps (hub, Idempotency-Key) to the first result of a send for
// a window. A second send with the same key waits for the first to finish
// and returns its result; if the first failed, the second runs. Keys of
// durable sends are rebuilt from the log when the server starts, so the
// window survives a restart for them.
//
// Namespace returns a view of the same index whose hubs are those of another
// namespace, as the log names them ("signalr/chat"): a key sent to hub chat of
// one namespace never meets the same key sent to hub chat of another.
type Idempotency struct {
	*idemIndex
	prefix string // "" for the default namespace, else "<namespace>/"
}

// idemIndex is the index that every namespace's view shares.
type idemIndex struct {
	window  time.Duration
	maxKeys int
	now     func() time.Time

	mu    sync.Mutex
	m     map[idemKey]*idemEntry
	order []idemKey // completed keys, oldest first, for expiry
	head  int
}

type idemKey struct{ hub, key string }

type idemEntry struct {
	fp        uint64
	done      chan struct{}
	completed bool
	res       Result
	at        time.Time
}

// NewIdempotency returns an index that keeps keys for window, and at most
// maxKeys of them (the oldest go first).
func NewIdempotency(window time.Duration, maxKeys int) *Idempotency {
	if maxKeys <= 0 {
		maxKeys = 1
	}
	return &Idempotency{idemIndex: &idemIndex{window: window, maxKeys: maxKeys, now: time.Now, m: map[idemKey]*idemEntry{}}}
}

// Namespace returns the view of the index for the hubs of namespace ns, named
// in it as the log names their streams (ns + "/" + hub). Len and the bounds
// stay those of the whole index.
func (x *Idempotency) Namespace(ns string) *Idempotency {
	return &Idempotency{idemIndex: x.idemIndex, prefix: x.prefix + ns + namespaceSep}
}

// Fingerprint identifies a send's request for ErrKeyReused: its target and
// its payload.
func Fingerprint(targetKind, targetName string, dataType uint8, data []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(targetKind))
	h.Write([]byte{0})
	h.Write([]byte(targetName))
	h.Write([]byte{0, dataType})
	h.Write(data)
	return h.Sum64()
}

// Claim is a send that owns its key until it commits or aborts.
type Claim struct {
	x *idemIndex
	k idemKey
	e *idemEntry
}

// Begin looks key up. When a send with that key completed within the window
// it returns that send's result (replayed = true). When one is in progress it
// waits for it (or ctx). Otherwise the caller owns the key: it must call
// Commit or Abort on the returned claim.
func (x *Idempotency) Begin(ctx context.Context, hub, key string, fp uint64) (res Result, replayed bool, c *Claim, err error) {
	return x.begin(ctx, idemKey{x.prefix + hub, key}, fp)
}

func (x *idemIndex) begin(ctx context.Context, k idemKey, fp uint64) (res Result, replayed bool, c *Claim, err error) {
	for {
		x.mu.Lock()
		x.expire()
		e := x.m[k]
		if e == nil {
			e = &idemEntry{fp: fp, done: make(chan struct{})}
			x.m[k] = e
			x.mu.Unlock()
			return Result{}, false, &Claim{x: x, k: k, e: e}, nil
		}
		if e.fp != fp {
			x.mu.Unlock()
			return Result{}, false, nil, ErrKeyReused
		}
		if e.completed {
			res := e.res
			x.mu.Unlock()
			return res, true, nil, nil
		}
		x.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return Result{}, false, nil, ctx.Err()
		}
	}
}

// Commit records the send's result for the window.
func (c *Claim) Commit(res Result) {
	x := c.x
	x.mu.Lock()
	c.e.res, c.e.completed, c.e.at = res, true, x.now()
	x.order = append(x.order, c.k)
	x.trim()
	x.mu.Unlock()
	close(c.e.done)
}

// Abort gives the key up: the send failed, a retry may run.
func (c *Claim) Abort() {
	x := c.x
	x.mu.Lock()
	if x.m[c.k] == c.e {
		delete(x.m, c.k)
	}
	x.mu.Unlock()
	close(c.e.done)
}

// restore adds a key found in the log at open; hub is the log's name of the
// hub, namespace included.
func (x *idemIndex) restore(hub, key string, fp uint64, res Result, at time.Time) {
	if x.now().Sub(at) > x.window {
		return
	}
	k := idemKey{hub, key}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.m[k]; ok {
		return
	}
	done := make(chan struct{})
	close(done)
	x.m[k] = &idemEntry{fp: fp, done: done, completed: true, res: res, at: at}
	x.order = append(x.order, k)
	x.trim()
}

// Len returns the number of keys held, in every namespace.
func (x *idemIndex) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.m)
}

// expire drops completed keys older than the window; x.mu held.
func (x *idemIndex) expire() {
	now := x.now()
	for x.head < len(x.order) {
		k := x.order[x.head]
		e := x.m[k]
		if e != nil && e.completed && now.Sub(e.at) <= x.window {
			break
		}
		if e != nil && e.completed {
			delete(x.m, k)
		}
		x.head++
	}
	x.compact()
}

// trim drops the oldest completed keys beyond maxKeys; x.mu held.
func (x *idemIndex) trim() {
	for len(x.order)-x.head > x.maxKeys {
		k := x.order[x.head]
		if e := x.m[k]; e != nil && e.completed {
			delete(x.m, k)
		}
		x.head++
	}
	x.compact()
}

func (x *idemIndex) compact() {
	if x.head > 1024 && x.head > len(x.order)/2 {
		n := copy(x.order, x.order[x.head:])
		clear(x.order[n:])
		x.order = x.order[:n]
		x.head = 0
	}
}
