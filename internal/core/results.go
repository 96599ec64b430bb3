package core

import (
	"fmt"
	"strconv"
	"sync"
)

// ClientResult is a client's answer to a server-to-client invocation that waits for one
// (SignalR client results). Core does not read it: Result is in the conn's protocol encoding.
type ClientResult struct {
	Result    []byte // the result value; nil when the client answered void or with an error
	HasResult bool
	Error     string // the client's error; "" when it succeeded
}

// results are the invocations of one conn that wait for the client's answer. Its mutex is a
// leaf: nothing else is locked while it is held.
type results struct {
	mu      sync.Mutex
	next    uint64
	pending map[string]chan ClientResult
	ended   bool
}

// AwaitResult registers an invocation that waits for the client's answer and returns its
// invocation id (unique within the conn), the channel that receives the answer, and cancel,
// which the caller must call when it stops waiting (it forgets the invocation; calling it
// after the answer came is harmless). When the conn ends first, the channel is closed without
// a value. An ended conn gives ErrConnNotFound.
func (c *Conn) AwaitResult() (id string, answer <-chan ClientResult, cancel func(), err error) {
	r := &c.results
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return "", nil, nil, ErrConnNotFound
	}
	r.next++
	id = "s" + strconv.FormatUint(r.next, 10)
	ch := r.registerLocked(id)
	return id, ch, func() { c.forgetResult(id) }, nil
}

// awaitResultID is AwaitResult for an invocation id the caller chose
// (Node.InvocationID): ErrInvocationID if it waits already.
func (c *Conn) awaitResultID(id string) (answer <-chan ClientResult, cancel func(), err error) {
	r := &c.results
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return nil, nil, fmt.Errorf("%w: %q", ErrConnNotFound, c.ID())
	}
	if _, ok := r.pending[id]; ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrInvocationID, id)
	}
	return r.registerLocked(id), func() { c.forgetResult(id) }, nil
}

// registerLocked adds a waiting invocation; r.mu is held.
func (r *results) registerLocked(id string) chan ClientResult {
	ch := make(chan ClientResult, 1)
	if r.pending == nil {
		r.pending = make(map[string]chan ClientResult)
	}
	r.pending[id] = ch
	return ch
}

// ResolveResult hands the client's answer to the invocation id. It reports false when nobody
// waits for it (an unknown id, or a caller that gave up).
func (c *Conn) ResolveResult(id string, res ClientResult) bool {
	r := &c.results
	r.mu.Lock()
	ch, ok := r.pending[id]
	delete(r.pending, id)
	r.mu.Unlock()
	if ok {
		ch <- res // buffered, and sent to at most once
	}
	return ok
}

// PendingResults is the number of invocations that wait for this conn's answer.
func (c *Conn) PendingResults() int {
	c.results.mu.Lock()
	defer c.results.mu.Unlock()
	return len(c.results.pending)
}

func (c *Conn) forgetResult(id string) {
	c.results.mu.Lock()
	delete(c.results.pending, id)
	c.results.mu.Unlock()
}

// endResults closes the channel of every waiting invocation: the conn is gone.
func (c *Conn) endResults() {
	r := &c.results
	r.mu.Lock()
	pending := r.pending
	r.pending, r.ended = nil, true
	r.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
}
