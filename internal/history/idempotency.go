package history

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"hash/maphash"
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

// idemIndex is the index that every namespace's view shares. It holds up to
// history.idempotency_keys completed keys for as long as the server runs, so
// it is built for the garbage collector: the completed keys and their order
// of expiry hold no pointers (a GC cycle does not mark them one by one), and
// a send allocates only its Claim.
//
// A key is not stored as its strings but as idemKey, a 128-bit hash of the
// hub (namespace included) and the key, length-delimited so that ("ab", "c")
// and ("a", "bc") differ, from two maphash sums with independent seeds drawn
// at random when the index is made. Two different keys meet only if both
// sums collide. maphash is not a cryptographic hash, but its seeds never
// leave the process and nothing a sender sees depends on the hashes, so a
// sender has nothing to aim a collision with; by chance the probability that
// any two of the 200,000 keys held collide is about n²/2¹²⁹ ≈ 6·10⁻²⁹. The seeds may
// change at every start because the index is rebuilt from the log then
// (restore). Even a collision would only answer a send as a replay of an
// earlier send with the same fingerprint (target and payload), or with
// ErrKeyReused.
type idemIndex struct {
	window  time.Duration
	maxKeys int
	now     func() time.Time
	// base is the origin of the entries' times (nanoseconds since base).
	// Taken from time.Now when the index is made, it keeps the monotonic
	// clock for the keys committed in this process, as comparing their
	// time.Times did; restored keys' times are wall-clock, as before.
	base         time.Time
	seedA, seedB maphash.Seed

	mu     sync.Mutex
	done   map[idemKey]idemDone // completed keys
	epochs map[idemKey]string   // a completed key's epoch that is not an embedded log's (16 hex digits) or ""
	busy   map[idemKey]*Claim   // keys whose send is in progress: as many as sends in flight
	order  idemRing             // completed keys, oldest first, for expiry
}

// idemKey is a key's 128-bit hash (see idemIndex).
type idemKey struct{ a, b uint64 }

// idemDone is a completed key's first result. It holds no pointers. When the
// key completed is in its idemAt in idemIndex.order, which expiry reads.
type idemDone struct {
	fp     uint64
	offset uint64
	epoch  uint64 // the epoch as FormatEpoch's argument: 0 is ""
	other  bool   // the epoch is another string, in idemIndex.epochs
}

// NewIdempotency returns an index that keeps keys for window, and at most
// maxKeys of them (the oldest go first).
func NewIdempotency(window time.Duration, maxKeys int) *Idempotency {
	if maxKeys <= 0 {
		maxKeys = 1
	}
	return &Idempotency{idemIndex: &idemIndex{
		window: window, maxKeys: maxKeys, now: time.Now, base: time.Now(),
		seedA: maphash.MakeSeed(), seedB: maphash.MakeSeed(),
		done: map[idemKey]idemDone{}, epochs: map[idemKey]string{}, busy: map[idemKey]*Claim{},
	}}
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

// key hashes (prefix + hub, key) with the index's seeds.
func (x *idemIndex) key(prefix, hub, key string) idemKey {
	return idemKey{sum(x.seedA, prefix, hub, key), sum(x.seedB, prefix, hub, key)}
}

func sum(seed maphash.Seed, prefix, hub, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(prefix)+len(hub)))
	h.Write(n[:])
	h.WriteString(prefix)
	h.WriteString(hub)
	binary.LittleEndian.PutUint64(n[:], uint64(len(key)))
	h.Write(n[:])
	h.WriteString(key)
	return h.Sum64()
}

// Claim is a send that owns its key until it commits or aborts. While it
// does, it is the key's entry among the sends in progress.
type Claim struct {
	x  *idemIndex
	k  idemKey
	fp uint64
	// wait is made by the first Begin that has to wait for this send, and
	// closed when the send commits or aborts; x.mu guards it.
	wait chan struct{}
}

// Begin looks key up. When a send with that key completed within the window
// it returns that send's result (replayed = true). When one is in progress it
// waits for it (or ctx). Otherwise the caller owns the key: it must call
// Commit or Abort on the returned claim.
func (x *Idempotency) Begin(ctx context.Context, hub, key string, fp uint64) (res Result, replayed bool, c *Claim, err error) {
	return x.begin(ctx, x.key(x.prefix, hub, key), fp)
}

func (x *idemIndex) begin(ctx context.Context, k idemKey, fp uint64) (res Result, replayed bool, c *Claim, err error) {
	for {
		x.mu.Lock()
		x.expire()
		if d, ok := x.done[k]; ok {
			if d.fp != fp {
				x.mu.Unlock()
				return Result{}, false, nil, ErrKeyReused
			}
			res := x.result(k, d)
			x.mu.Unlock()
			return res, true, nil, nil
		}
		c := x.busy[k]
		if c == nil {
			c = &Claim{x: x, k: k, fp: fp}
			x.busy[k] = c
			x.mu.Unlock()
			return Result{}, false, c, nil
		}
		if c.fp != fp {
			x.mu.Unlock()
			return Result{}, false, nil, ErrKeyReused
		}
		if c.wait == nil {
			c.wait = make(chan struct{})
		}
		wait := c.wait
		x.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return Result{}, false, nil, ctx.Err()
		}
	}
}

// result is the Result that d and k's entry in x.epochs stand for; x.mu held.
func (x *idemIndex) result(k idemKey, d idemDone) Result {
	switch {
	case d.other:
		return Result{Offset: d.offset, Epoch: x.epochs[k]}
	case d.epoch == 0:
		return Result{Offset: d.offset}
	default:
		return Result{Offset: d.offset, Epoch: FormatEpoch(d.epoch)}
	}
}

// Commit records the send's result for the window.
func (c *Claim) Commit(res Result) {
	x := c.x
	x.mu.Lock()
	if x.busy[c.k] == c {
		delete(x.busy, c.k)
	}
	x.add(c.k, c.fp, res, x.now())
	wait := c.wait
	x.mu.Unlock()
	if wait != nil {
		close(wait)
	}
}

// Abort gives the key up: the send failed, a retry may run.
func (c *Claim) Abort() {
	x := c.x
	x.mu.Lock()
	if x.busy[c.k] == c {
		delete(x.busy, c.k)
	}
	wait := c.wait
	x.mu.Unlock()
	if wait != nil {
		close(wait)
	}
}

// restore adds a key found in the log at open; hub is the log's name of the
// hub, namespace included.
func (x *idemIndex) restore(hub, key string, fp uint64, res Result, at time.Time) {
	if x.now().Sub(at) > x.window {
		return
	}
	k := x.key("", hub, key)
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.done[k]; ok {
		return
	}
	if _, ok := x.busy[k]; ok {
		return
	}
	x.add(k, fp, res, at)
}

// add records k as completed at time at; x.mu held.
func (x *idemIndex) add(k idemKey, fp uint64, res Result, at time.Time) {
	if _, ok := x.done[k]; ok {
		// Not reached: a key is completed once until it leaves the index
		// (order holds each completed key once).
		return
	}
	d := idemDone{fp: fp, offset: res.Offset}
	if e, ok := parseEpoch(res.Epoch); ok {
		d.epoch = e
	} else {
		d.other = true
		x.epochs[k] = res.Epoch
	}
	x.done[k] = d
	x.order.push(idemAt{k: k, at: int64(at.Sub(x.base))})
	x.trim()
}

// drop removes the oldest completed key; x.mu held.
func (x *idemIndex) drop() {
	k := x.order.pop().k
	delete(x.done, k)
	delete(x.epochs, k) // nearly always empty: a cheap delete
}

// Len returns the number of keys held, in every namespace.
func (x *idemIndex) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.done) + len(x.busy)
}

// expire drops completed keys older than the window; x.mu held.
func (x *idemIndex) expire() {
	now := int64(x.now().Sub(x.base))
	for x.order.n > 0 && time.Duration(now-x.order.first().at) > x.window {
		x.drop()
	}
}

// trim drops the oldest completed keys beyond maxKeys; x.mu held.
func (x *idemIndex) trim() {
	for x.order.n > x.maxKeys {
		x.drop()
	}
}

// idemAt is a completed key and when it completed, in nanoseconds since
// idemIndex.base.
type idemAt struct {
	k  idemKey
	at int64
}

// idemRing is a queue of completed keys in a ring that grows as needed (to
// about maxKeys), so that a steady stream of keys allocates nothing.
type idemRing struct {
	buf     []idemAt
	head, n int
}

func (r *idemRing) push(a idemAt) {
	if r.n == len(r.buf) {
		buf := make([]idemAt, max(64, 2*len(r.buf)))
		m := copy(buf, r.buf[r.head:])
		copy(buf[m:], r.buf[:r.head])
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = a
	r.n++
}

func (r *idemRing) first() idemAt { return r.buf[r.head] }

func (r *idemRing) pop() idemAt {
	a := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return a
}

// parseEpoch returns the number that FormatEpoch makes s of, and false when
// s is not FormatEpoch's (a cluster's epoch may be any string).
func parseEpoch(s string) (uint64, bool) {
	if s == "" {
		return 0, true
	}
	if len(s) != 16 {
		return 0, false
	}
	var e uint64
	for i := range len(s) {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			e = e<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			e = e<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return e, e != 0 // FormatEpoch(0) is "", not 16 zeros
}
