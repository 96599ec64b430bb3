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

// TestSendStartKeepsStartOrder: sends started one after the other to a history group get
// their offsets in that order and are broadcast in that order, even when their writes
// complete together and their finishes run concurrently.
func TestSendStartKeepsStartOrder(t *testing.T) {
	hist := &failingHistory{appended: make(chan struct{}, 3), topped: make(chan struct{}, 1), release: make(chan error, 3)}
	n := testNode(t, core.Config{History: hist})
	h := testHub(t, n, "chat")
	c := connect(t, h, core.ConnInfo{})
	if err := h.JoinGroup(c.Conn, "g"); err != nil {
		t.Fatal(err)
	}
	var finishes []func() error
	var msgs []*core.Message
	for _, s := range []string{"a", "b", "c"} {
		m := textMsg(s)
		f, err := h.SendStart(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, m)
		if err != nil {
			t.Fatal(err)
		}
		finishes, msgs = append(finishes, f), append(msgs, m)
	}
	for i, m := range msgs {
		if m.Offset != uint64(i+1) {
			t.Errorf("message %d has offset %d, want %d", i, m.Offset, i+1)
		}
	}
	var wg sync.WaitGroup
	for i := len(finishes) - 1; i >= 0; i-- { // the last started finishes first
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := finishes[i](); err != nil {
				t.Error(err)
			}
		}()
	}
	for range 3 {
		hist.release <- nil
	}
	wg.Wait()
	if got := c.bodies(); len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("broadcast %q, want [a b c]", got)
	}
}
