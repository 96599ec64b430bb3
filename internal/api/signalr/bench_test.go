package signalr_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/core"
)

// BenchmarkBroadcast measures one REST broadcast (routing, token check, payload parse, send)
// to 100 conns, without the network.
func BenchmarkBroadcast(b *testing.B) {
	h, node, keys := newHandler(b, signalr.Config{})
	hub, err := node.Hub("chat")
	if err != nil {
		b.Fatal(err)
	}
	var conns []client
	for range 100 {
		l := &link{}
		c, err := hub.Connect(core.ConnInfo{Codec: codec{}}, l)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, client{c, l})
	}
	const target = "/api/hubs/chat/:send?api-version=2022-06-01"
	tok, err := keys.MintServerToken("http://localhost"+target, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(invocation))
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d %s", w.Code, w.Body)
		}
		for _, c := range conns {
			c.Drain(c.link, nil)
		}
	}
}
