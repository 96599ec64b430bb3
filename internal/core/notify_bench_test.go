package core_test

import (
	"strconv"
	"testing"

	"github.com/switchboardhq/switchboard/internal/core"
)

// BenchmarkPresenceJoinLeave: one join and one leave of a user's conn in a
// group of 100 watchers, with member notifications off and on (each
// join and leave then queues a notice to the 100). ns/op is the cost of a
// join+leave pair on one node.
func BenchmarkPresenceJoinLeave(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		cfg := core.Config{Limits: core.Limits{MaxQueueBytes: 1 << 30}}
		if on {
			name, cfg.PresenceNotify = "on", notifyConfig()
		}
		b.Run(name, func(b *testing.B) {
			h := testHub(b, testNode(b, cfg), "bench")
			watchers := make([]*core.Conn, 100)
			for i := range watchers {
				c, err := h.Connect(core.ConnInfo{Codec: newCodec(1, ""), UserID: "w" + strconv.Itoa(i), Groups: []string{"room"}, Dialect: "test"}, nopLink{})
				if err != nil {
					b.Fatal(err)
				}
				watchers[i] = c
			}
			c, err := h.Connect(core.ConnInfo{Codec: newCodec(1, ""), UserID: "ann", Dialect: "test"}, nopLink{})
			if err != nil {
				b.Fatal(err)
			}
			var buf []core.Item
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				h.JoinGroup(c, "room")
				h.LeaveGroup(c, "room")
				if i%64 == 63 {
					for _, w := range watchers {
						buf = w.Drain(nopLink{}, buf[:0])
					}
				}
			}
			b.ReportMetric(float64(b.N*2)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}
