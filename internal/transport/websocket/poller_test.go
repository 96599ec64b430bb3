//go:build linux

package websocket

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// TestIdleSocketsHoldNoGoroutine parks idle sockets in the poller: opening
// many adds no goroutines, yet each still reads what its client sends, and
// one dropped while parked is reported to its handler.
func TestIdleSocketsHoldNoGoroutine(t *testing.T) {
	const n = 64
	e := newEnv(t, Options{PingInterval: time.Hour})
	if e.srv.poller == nil {
		t.Fatal("no poller on Linux")
	}
	clients := make([]*client, n)
	peers := make([]*peer, n)
	before := runtime.NumGoroutine()
	for i := range clients {
		clients[i], peers[i] = e.dial(t, 0)
	}
	eventually.True(t, "sockets to park", 5*time.Second, func() bool {
		for _, p := range peers {
			p.sock.mu.Lock()
			parked := p.sock.parked
			p.sock.mu.Unlock()
			if !parked {
				return false
			}
		}
		return true
	})
	if grown := runtime.NumGoroutine() - before; grown >= n/2 {
		t.Fatalf("%d idle sockets added %d goroutines", n, grown)
	}
	for i, c := range clients {
		c.write(t, ws.NewTextFrame(fmt.Appendf(nil, "hello %d", i)))
	}
	for i, p := range peers {
		if m := p.handler.next(t); string(m.data) != fmt.Sprint("hello ", i) {
			t.Fatalf("socket %d read %q", i, m.data)
		}
	}
	// Two messages in one TCP segment are both read before parking again.
	two := append(rawFrame(true, ws.OpText, []byte("one"), true), rawFrame(true, ws.OpText, []byte("two"), true)...)
	clients[0].writeRaw(t, two)
	if a, b := peers[0].handler.next(t), peers[0].handler.next(t); string(a.data) != "one" || string(b.data) != "two" {
		t.Fatalf("burst read %q, %q", a.data, b.data)
	}
	// A parked socket killed by the server is finished by the kill.
	eventually.True(t, "socket 1 to park again", 5*time.Second, func() bool {
		peers[1].sock.mu.Lock()
		defer peers[1].sock.mu.Unlock()
		return peers[1].sock.parked
	})
	peers[1].sock.kill("test kill")
	if reason := peers[1].handler.waitClosed(t, 5*time.Second); reason != "test kill" {
		t.Fatalf("HandleClose(%q), want the kill reason", reason)
	}
}
