package server_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/tracing/tracingtest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// TestTracing: with tracing on, a REST send carrying a traceparent is a
// server span of the caller's trace whose children are the history append
// and the fan-out, and an event-handler call is a client span whose
// traceparent the handler receives.
func TestTracing(t *testing.T) {
	sr := tracingtest.Record(t)
	var mu sync.Mutex
	var handlerParents []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions { // abuse protection
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		mu.Lock()
		handlerParents = append(handlerParents, r.Header.Get("traceparent"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hs.Close()
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("hubs:\n  chat:\n    event_handlers:\n      - url_template: \""+hs.URL+"/{event}\"\n        system_events: [connected]\n    history:\n      - {pattern: \"room:*\", max_messages: 10, max_age: 1h}\n"), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: file})

	const trace = "0af7651916cd43dd8448eb211c80319c"
	resp, body := restDo(t, srv, http.MethodPost, strings.TrimRight(srv.Endpoint(), "/")+"/api/hubs/chat/groups/room:1/:send?api-version=2024-12-01", `{"n":1}`,
		"traceparent", "00-"+trace+"-b7ad6b7169203331-01")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d %s", resp.StatusCode, body)
	}
	var rest sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.SpanContext().TraceID().String() == trace && strings.HasPrefix(s.Name(), "switchboard.rest webpubsub") {
			rest = s
		}
	}
	if rest == nil {
		t.Fatalf("no REST span in the caller's trace; spans: %v", names(sr.Ended()))
	}
	if rest.Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("REST span's parent %s, want the caller's span", rest.Parent().SpanID())
	}
	for _, name := range []string{"switchboard.history.append", "switchboard.fanout"} {
		n := 0
		for _, s := range tracingtest.Named(sr, name) {
			if s.Parent().SpanID() == rest.SpanContext().SpanID() {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d %s spans under the REST span, want 1", n, name)
		}
	}

	tok, _ := srv.Keys().MintClientToken(auth.ClientAudience(srv.Endpoint(), "chat"), auth.MintOptions{})
	wstest.Dial(t, strings.Replace(srv.Endpoint(), "http", "ws", 1)+"/client/hubs/chat?access_token="+url.QueryEscape(tok), "json.webpubsub.azure.v1").Read()
	eventually.True(t, "the connected event's span", 5*time.Second, func() bool { return len(tracingtest.Named(sr, "switchboard.upstream connected")) > 0 })
	up := tracingtest.Named(sr, "switchboard.upstream connected")[0]
	want := "00-" + up.SpanContext().TraceID().String() + "-" + up.SpanContext().SpanID().String() + "-01"
	mu.Lock()
	defer mu.Unlock()
	if len(handlerParents) == 0 || handlerParents[0] != want {
		t.Errorf("the handler got traceparent %q, want %q (the client span's)", handlerParents, want)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}
