package longpoll

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// BenchmarkPollWithData measures a poll that finds 8 messages queued: drain,
// concatenation and the response (to a recorder, not a socket).
func BenchmarkPollWithData(b *testing.B) {
	node, err := core.NewNode(core.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	hub, _ := node.Hub("chat")
	lp := New(Options{Registerer: prometheus.NewRegistry()})
	defer lp.Stop()
	conn, err := hub.Connect(core.ConnInfo{Codec: testCodec{}, Dialect: "test"}, lp)
	if err != nil {
		b.Fatal(err)
	}
	lp.Bind(conn)
	r := httptest.NewRequest(http.MethodGet, "/client/", nil)
	lp.Poll(httptest.NewRecorder(), r) // the first poll
	msg := &core.Message{Data: []byte(`{"type":1,"target":"send","arguments":["hello"]}` + "\x1e")}
	b.ReportAllocs()
	for b.Loop() {
		for range 8 {
			conn.Deliver(msg)
		}
		w := httptest.NewRecorder()
		lp.Poll(w, r)
		if w.Body.Len() != 8*len(msg.Data) {
			b.Fatalf("body %d bytes", w.Body.Len())
		}
	}
}
