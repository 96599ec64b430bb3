package core_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// nopLink is a Link that does nothing and allocates nothing.
type nopLink struct{}

func (nopLink) Wake()             {}
func (nopLink) Close(int, string) {}

// group returns a hub with n conns in group "g", all of codec, and a
// function that drains them all, as the writers would.
func benchGroup(tb testing.TB, n int, codec core.Codec) (*core.Hub, func()) {
	tb.Helper()
	node := testNode(tb, core.Config{Limits: core.Limits{MaxQueueBytes: 1 << 30}})
	h := testHub(tb, node, "bench")
	conns := make([]*core.Conn, n)
	for i := range conns {
		c, err := h.Connect(core.ConnInfo{Codec: codec, Groups: []string{"g"}, Dialect: "test"}, nopLink{})
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	var buf []core.Item
	drain := func() {
		for _, c := range conns {
			buf = c.Drain(nopLink{}, buf[:0])
		}
		clear(buf)
	}
	return h, drain
}

var payload = []byte(`{"temperature":21.5,"unit":"C","sensor":"a1"}`)

func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h, drain := benchGroup(b, n, newCodec(1, "json:"))
			target := core.Target{Kind: core.ToGroup, Name: "g"}
			ctx := context.Background()
			for i := 0; i < 3; i++ { // grow every queue to its working size
				h.Send(ctx, target, &core.Message{Type: core.JSON, Data: payload})
				drain()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := &core.Message{Type: core.JSON, Data: payload}
				if err := h.Send(ctx, target, m); err != nil {
					b.Fatal(err)
				}
				drain()
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	b.Run("control", func(b *testing.B) {
		h, drain := benchGroup(b, 1, newCodec(1, ""))
		var c *core.Conn
		page, _ := h.ListGroup("g", "", 1)
		c, _ = h.Conn(page[0].ConnID)
		f := core.Frame{Data: payload}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.Send(f)
			if i%1024 == 1023 {
				drain()
			}
		}
	})
	b.Run("message", func(b *testing.B) {
		h, drain := benchGroup(b, 1, newCodec(1, ""))
		page, _ := h.ListGroup("g", "", 1)
		target := core.Target{Kind: core.ToConn, Name: page[0].ConnID}
		m := &core.Message{Type: core.JSON, Data: payload} // encoded once, then reused
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			h.Send(ctx, target, m)
			if i%1024 == 1023 {
				drain()
			}
		}
	})
}

// TestBroadcastAllocsFlat checks that one more recipient of an already
// encoded message costs no allocation: a send to 1000 members allocates as
// much as a send to 10.
func TestBroadcastAllocsFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are noisy with -short runs in parallel")
	}
	allocs := func(n int) float64 {
		h, drain := benchGroup(t, n, newCodec(1, ""))
		target := core.Target{Kind: core.ToGroup, Name: "g"}
		m := &core.Message{Type: core.JSON, Data: payload}
		ctx := context.Background()
		for i := 0; i < 10; i++ { // grow every queue to its working size
			h.Send(ctx, target, m)
			drain()
		}
		return testing.AllocsPerRun(200, func() {
			h.Send(ctx, target, m)
			drain()
		})
	}
	small, large := allocs(10), allocs(1000)
	t.Logf("allocs per send: %v with 10 members, %v with 1000", small, large)
	if perRecipient := (large - small) / 990; perRecipient > 0.001 {
		t.Errorf("%.4f allocations per extra recipient (10 members: %v/send, 1000: %v/send), want 0", perRecipient, small, large)
	}
	// And a fresh message costs the same constant whatever the fan-out.
	fresh := func(n int) float64 {
		h, drain := benchGroup(t, n, newCodec(1, ""))
		target := core.Target{Kind: core.ToGroup, Name: "g"}
		ctx := context.Background()
		for i := 0; i < 10; i++ {
			h.Send(ctx, target, &core.Message{Data: payload})
			drain()
		}
		return testing.AllocsPerRun(200, func() {
			h.Send(ctx, target, &core.Message{Data: payload})
			drain()
		})
	}
	if small, large := fresh(10), fresh(1000); large > small {
		t.Errorf("fresh message: %v allocs/send with 10 members, %v with 1000, want equal", small, large)
	}
}
