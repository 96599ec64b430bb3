package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

type benchLink struct{}

func (benchLink) Wake()             {}
func (benchLink) Close(int, string) {}

type benchCodec struct{}

func (benchCodec) Key() int                                         { return 1 }
func (benchCodec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (benchCodec) Sequenced() bool                                  { return false }
func (benchCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (benchCodec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

// BenchmarkJoinLeave measures a join and a leave of one of 1,000 conns (one op: both) on
// the node, with group presence events off (no event handler), on for another hub only
// (handlers exist, this hub's take no presence events), and on (each join and leave queues
// a joined or left event for a loopback handler that answers 204; they compete for the CPU
// with the workers delivering them), and queued (the handler holds every request until the
// end, so ns/op is the cost of queueing the two events alone). It reports the events the
// handler received per second of the run; the joins never wait for them.
//
//	go test -run '^$' -bench BenchmarkJoinLeave -benchtime 50000x ./internal/server/
func BenchmarkJoinLeave(b *testing.B) {
	for _, mode := range []string{"off", "other_hub", "on", "queued"} {
		b.Run(mode, func(b *testing.B) {
			var got atomic.Int64
			hold := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodOptions {
					w.Header().Set("WebHook-Allowed-Origin", "*")
					return
				}
				if mode == "queued" {
					<-hold
				}
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer backend.Close()
			keys, _ := auth.NewKeyRing("bench-access-key-0123456789")
			hubWithEvents := "chat"
			if mode == "other_hub" {
				hubWithEvents = "elsewhere"
			}
			cfg := core.Config{Registerer: prometheus.NewRegistry()}
			var up *upstream.Client
			if mode != "off" {
				var err error
				up, err = upstream.New(upstream.Config{Keys: keys, Origin: "bench.local", QueueLimit: 4 * b.N,
					Handlers: func(hub string) []upstream.Handler {
						if hub != hubWithEvents {
							return nil
						}
						return []upstream.Handler{{URLTemplate: backend.URL + "/{event}", GroupPresenceEvents: []string{"joined", "left"}}}
					}})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Membership = groupEvents(up, keys).membership()
			}
			n, err := core.NewNode(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer n.Shutdown(context.Background(), "done")
			h, err := n.Hub("chat")
			if err != nil {
				b.Fatal(err)
			}
			conns := make([]*core.Conn, 1000)
			for i := range conns {
				if conns[i], err = h.Connect(core.ConnInfo{UserID: "u" + strconv.Itoa(i), Codec: benchCodec{}}, benchLink{}); err != nil {
					b.Fatal(err)
				}
			}
			groups := make([]string, 100)
			for i := range groups {
				groups[i] = "room-" + strconv.Itoa(i)
			}
			start := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c, g := conns[i%len(conns)], groups[i%len(groups)]
				if err := h.JoinGroup(c, g); err != nil {
					b.Fatal(err)
				}
				h.LeaveGroup(c, g)
			}
			b.StopTimer()
			close(hold)
			if up != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				up.Close(ctx) // waits for the queue to drain
				cancel()
				b.ReportMetric(float64(got.Load())/time.Since(start).Seconds(), "events/s")
			}
		})
	}
}
