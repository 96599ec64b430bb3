package core

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// The calls a REST API makes to one conn that carry frames in the conn's
// own protocol (SignalR :invoke and server-to-client streams), wherever the
// conn is held: the caller learns the conn's protocol (ConnProtocol), builds
// the frames, and hands them over (DeliverFramed, Invoke). On a single node
// they run here; in a cluster, on the conn's node by a Request.

// Errors of Invoke besides ErrConnNotFound and the Router's.
var (
	// ErrInvocationTimeout: the client did not answer within the wait.
	ErrInvocationTimeout = errors.New("core: the client did not answer the invocation in time")
	// ErrInvocationClosed: the conn ended before it answered.
	ErrInvocationClosed = errors.New("core: the connection closed before it answered the invocation")
	// ErrInvocationID: the id waits already on the conn.
	ErrInvocationID = errors.New("core: invocation id in use")
)

// MaxInvocationWait bounds the wait of one Invoke.
const MaxInvocationWait = 10 * time.Minute

var invocationSeq atomic.Uint64

// InvocationID returns an invocation id unique in the cluster: the node's
// id and a sequence number. (Conn.AwaitResult's ids, "s1", "s2", …, cannot
// collide with it: a node id is not "s" followed by digits and a dot.)
func (h *Hub) InvocationID() string {
	return h.node.cfg.NodeID + "." + strconv.FormatUint(invocationSeq.Add(1), 10)
}

// ConnProtocol returns the protocol of the conn called id, wherever it is
// held (ErrConnNotFound if nowhere).
func (h *Hub) ConnProtocol(ctx context.Context, id string) (string, error) {
	r, err := h.Do(ctx, Request{Kind: ReqConnExists, Conn: id})
	if err != nil {
		return "", err
	}
	return r.Protocol, r.Err
}

// DeliverFramed queues frames (whole frames in the conn's protocol) to the
// conn called id, wherever it is held.
func (h *Hub) DeliverFramed(ctx context.Context, id string, frames []byte) error {
	r, err := h.Do(ctx, Request{Kind: ReqDeliver, Conn: id, Data: frames})
	if err != nil {
		return err
	}
	return r.Err
}

// Invoke queues frame, an invocation whose id is invocationID (from
// InvocationID), to the conn called id, wherever it is held, and waits up to
// wait (at most MaxInvocationWait) for the client's answer. It fails with
// ErrConnNotFound (no such conn), ErrInvocationClosed, ErrInvocationTimeout
// or the Router's error.
func (h *Hub) Invoke(ctx context.Context, id, invocationID string, frame []byte, wait time.Duration) (ClientResult, error) {
	r, err := h.Do(ctx, Request{Kind: ReqInvoke, Conn: id, ID: invocationID, Data: frame, Wait: min(wait, MaxInvocationWait)})
	if err != nil {
		return ClientResult{}, err
	}
	return r.Result, r.Err
}

// startInvoke runs a ReqInvoke on c: it registers the invocation, queues its
// frame, and returns the reply whose Await waits for the answer.
func startInvoke(c *Conn, req *Request) Reply {
	answer, cancel, err := c.awaitResultID(req.ID)
	if err != nil {
		return Reply{Err: err}
	}
	c.Deliver(&Message{Type: Framed, Data: req.Data})
	wait := min(req.Wait, MaxInvocationWait)
	return Reply{Await: func(ctx context.Context) Reply {
		defer cancel()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return Reply{Err: ctx.Err()}
		case res, open := <-answer:
			if !open {
				return Reply{Err: fmt.Errorf("%w: %q", ErrInvocationClosed, c.ID())}
			}
			return Reply{Result: res}
		case <-t.C:
			return Reply{Err: fmt.Errorf("%w (%s)", ErrInvocationTimeout, wait)}
		}
	}}
}
