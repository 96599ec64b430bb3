package server_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// BenchmarkClusterPresenceJoinLeave: on three nodes with 30 watchers of
// room:1 on each (real WebSocket clients that read and discard), a
// connection of node b joins and leaves room:1; with notifications on,
// every join and leave reaches the 90 watchers. ns/op is one join+leave
// pair as node b runs it (core joins, no REST).
func BenchmarkClusterPresenceJoinLeave(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			ns := natstest.Start(b, 0)
			var n []*servertest.Server
			if on {
				n = startNotifyCluster(b, ns.URL(), "a", "b", "c")
			} else {
				n = startCluster(b, ns.URL(), "a", "b", "c")
			}
			for _, srv := range n {
				for i := range 30 {
					discardingClient(b, srv, "w"+strconv.Itoa(i), "room:1")
				}
			}
			id := discardingClient(b, n[1], "ann")
			h, err := n[1].Node().Hub("chat")
			if err != nil {
				b.Fatal(err)
			}
			c, err := h.Conn(id)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := h.JoinGroup(c, "room:1"); err != nil {
					b.Fatal(err)
				}
				h.LeaveGroup(c, "room:1")
			}
			b.ReportMetric(float64(b.N*2)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// discardingClient dials a json.webpubsub.azure.v1 client of user in
// groups whose messages a goroutine reads and drops; it returns its
// connection id.
func discardingClient(tb testing.TB, srv *servertest.Server, user string, groups ...string) string {
	tb.Helper()
	ep := strings.TrimRight(srv.Endpoint(), "/")
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{UserID: user, Groups: groups})
	if err != nil {
		tb.Fatal(err)
	}
	ws := wstest.Dial(tb, strings.Replace(ep, "http", "ws", 1)+"/client/hubs/chat?access_token="+tok, "json.webpubsub.azure.v1")
	hello := string(ws.Read())
	_, rest, _ := strings.Cut(hello, `"connectionId":"`)
	id, _, _ := strings.Cut(rest, `"`)
	go func() { // ends when the socket does (the test's cleanup closes it)
		for {
			if _, _, err := ws.ReadErr(); err != nil && !strings.Contains(err.Error(), "timeout") {
				return
			}
		}
	}()
	return id
}
