package webpubsub

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboardhq/switchboard/internal/heaptest"
)

// TestRefusedRequestsLeaveNoHub sends 10,000 requests naming new hubs that
// the endpoint refuses (no upgrade, no token, a bad token). On main each made
// its hub before the checks (3x64 sharded maps, ~34 KiB) and kept it:
// 10,000 hubs and ~340 MB of heap. Nothing may be made before the client is
// authenticated.
func TestRefusedRequestsLeaveNoHub(t *testing.T) {
	s := startServer(t, serverOptions{})
	upgrade := func(r *http.Request) *http.Request {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	kinds := []struct {
		name   string
		req    func(i int) *http.Request
		status int
	}{
		{"no upgrade header", func(i int) *http.Request {
			return httptest.NewRequest(http.MethodGet, fmt.Sprintf("/client/hubs/plain%d", i), nil)
		}, http.StatusBadRequest},
		{"no token, ?hub=", func(i int) *http.Request {
			return upgrade(httptest.NewRequest(http.MethodGet, fmt.Sprintf("/client/?hub=query%d", i), nil))
		}, http.StatusUnauthorized},
		{"bad token", func(i int) *http.Request {
			return upgrade(httptest.NewRequest(http.MethodGet, fmt.Sprintf("/client/hubs/bad%d?access_token=a.b.c", i), nil))
		}, http.StatusUnauthorized},
	}
	const requests = 10000
	grew := heaptest.Growth(func() {
		for i := range requests {
			k := kinds[i%len(kinds)]
			rec := httptest.NewRecorder()
			s.ep.ServeHTTP(rec, k.req(i))
			if rec.Code != k.status {
				t.Fatalf("%s: status %d %q, want %d", k.name, rec.Code, rec.Body, k.status)
			}
		}
	})
	if hubs := s.node.Hubs(); len(hubs) != 0 {
		t.Errorf("%d refused requests left %d hubs", requests, len(hubs))
	}
	t.Logf("heap after %d refused requests: %+d bytes, %d hubs", requests, grew, len(s.node.Hubs()))
	if grew > 5<<20 {
		t.Errorf("%d refused requests kept %d bytes of heap, want < 5 MiB", requests, grew)
	}
}
