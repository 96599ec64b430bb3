package signalr_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboardhq/switchboard/internal/heaptest"
)

// TestRefusedRequestsLeaveNoHub sends 10,000 negotiate and WebSocket
// requests naming new hubs without a valid token. On main each made its hub
// before the token was checked (~34 KiB each, never freed).
func TestRefusedRequestsLeaveNoHub(t *testing.T) {
	s := startServer(t, serverOptions{})
	kinds := []struct {
		name   string
		req    func(i int) *http.Request
		status int
	}{
		{"negotiate without token", func(i int) *http.Request {
			return httptest.NewRequest(http.MethodPost, fmt.Sprintf("/client/negotiate?hub=neg%d&negotiateVersion=1", i), nil)
		}, http.StatusUnauthorized},
		{"negotiate with a bad token", func(i int) *http.Request {
			r := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/client/negotiate?hub=bad%d", i), nil)
			r.Header.Set("Authorization", "Bearer a.b.c")
			return r
		}, http.StatusUnauthorized},
		{"websocket without negotiate nor token", func(i int) *http.Request {
			r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/client/?hub=ws%d", i), nil)
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			return r
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
