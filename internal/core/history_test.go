package core_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// failingHistory is a History whose writes the test completes: release
// fails the pending write the way the segment log does on a full disk (the
// offset is taken back and Rollbacks counts it).
type failingHistory struct {
	mu        sync.Mutex
	next      uint64 // last offset given out
	durable   uint64
	rollbacks uint64
	appended  chan struct{}
	topped    chan struct{}
	release   chan error
}

func (h *failingHistory) Keeps(string, string) bool { return true }

func (h *failingHistory) Append(_ context.Context, _, _ string, m *core.Message) (func() error, error) {
	h.mu.Lock()
	h.next++
	m.Offset, m.Epoch = h.next, "e"
	h.mu.Unlock()
	h.appended <- struct{}{}
	return func() error {
		err := <-h.release
		h.mu.Lock()
		if err != nil {
			h.next = h.durable
			h.rollbacks++
		} else {
			h.durable = h.next
		}
		h.mu.Unlock()
		return err
	}, nil
}

func (h *failingHistory) Top(string, string) (uint64, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case h.topped <- struct{}{}:
	default:
	}
	return h.next, "e"
}

func (h *failingHistory) Replay(_, _ string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	return nil, from.Offset == upTo
}

func (h *failingHistory) Rollbacks() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rollbacks
}

// TestJoinAfterRefusedSendGetsDurableTop: a recovering join that read the
// stream's top while a send was being written, and whose turn starts after
// that write failed (its offset taken back), reports the durable top, not
// the refused offset, which the next send reuses. Without the retry the
// join said offset 1, and the client would take the next message (offset 1)
// for one it had.
func TestJoinAfterRefusedSendGetsDurableTop(t *testing.T) {
	hist := &failingHistory{appended: make(chan struct{}, 1), topped: make(chan struct{}, 1), release: make(chan error)}
	n := testNode(t, core.Config{History: hist})
	h := testHub(t, n, "chat")
	c := connect(t, h, core.ConnInfo{})

	sent := make(chan error, 1)
	go func() {
		sent <- h.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, &core.Message{Data: []byte("refused")})
	}()
	<-hist.appended
	type joined struct {
		res core.JoinResult
		err error
	}
	join := make(chan joined, 1)
	go func() {
		res, err := h.JoinGroupFrom(c.Conn, "g", &core.StreamPosition{Offset: 0, Epoch: "e"})
		join <- joined{res, err}
	}()
	<-hist.topped // the join read the top (1) while the send was being written
	hist.release <- errors.New("no space left on device")
	if err := <-sent; err == nil {
		t.Fatal("the refused send returned nil")
	}
	j := <-join
	if j.err != nil {
		t.Fatal(j.err)
	}
	if j.res.Offset != 0 {
		t.Errorf("join after the refused send: offset %d, want 0 (the refused offset was taken back)", j.res.Offset)
	}
}
