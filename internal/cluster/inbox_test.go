package cluster

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// TestInboxBoundsWhatItHolds: while delivery is held up, the inbox queues at
// most inboxMaxBytes and drops (and reports) the rest; once delivery moves,
// what it kept is delivered in the order it arrived.
func TestInboxBoundsWhatItHolds(t *testing.T) {
	hold := make(chan struct{})
	var mu sync.Mutex
	var got []string
	var dropped, firsts atomic.Int64
	in := newInbox(func(m *nats.Msg) {
		<-hold
		mu.Lock()
		got = append(got, m.Subject)
		mu.Unlock()
	}, func(first bool) {
		dropped.Add(1)
		if first {
			firsts.Add(1)
		}
	})
	data := make([]byte, 1<<20) // shared: the test itself holds 1 MiB
	// The deliverer holds at most one full queue (the batch it took), the
	// queue at most inboxMaxBytes: of twice that and 10 more, at least 10
	// are dropped.
	const sent = 2*inboxMaxBytes>>20 + 10
	for i := range sent {
		in.ch <- &nats.Msg{Subject: strconv.Itoa(i), Data: data}
	}
	eventually.True(t, "the inbox drops what exceeds its bound", 10*time.Second, func() bool { return dropped.Load() >= 10 })
	in.mu.Lock()
	queued, bytes := len(in.q), in.bytes
	in.mu.Unlock()
	if bytes > inboxMaxBytes || queued >= sent-1 {
		t.Fatalf("the inbox holds %d messages, %d bytes: want at most %d bytes", queued, bytes, inboxMaxBytes)
	}
	if n := firsts.Load(); n != 1 {
		t.Errorf("%d drops reported as the first of an episode, want 1", n)
	}
	close(hold)
	in.close()
	if len(got) != sent-int(dropped.Load()) {
		t.Fatalf("delivered %d, dropped %d of %d", len(got), dropped.Load(), sent)
	}
	prev := -1
	for _, s := range got {
		i, _ := strconv.Atoi(s)
		if i <= prev {
			t.Fatalf("delivered out of order: %v", got)
		}
		prev = i
	}
}
