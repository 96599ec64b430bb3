package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestReadinessBeforeServe: a server that was made but does not serve yet
// is alive and not ready, and says why.
func TestReadinessBeforeServe(t *testing.T) {
	cfg, err := config.Load("", nil, []string{"server.addr=127.0.0.1:0", "signalr.addr=", "server.data_dir=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]string{
		"/healthz":          `{"status":"alive"}`,
		"/readyz":           `{"status":"unavailable","reasons":["not serving: starting or shutting down"]}`,
		"/api/health/ready": `{"status":"unavailable","reasons":["not serving: starting or shutting down"]}`,
	} {
		rec := httptest.NewRecorder()
		s.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		wantStatus := http.StatusServiceUnavailable
		if path == "/healthz" {
			wantStatus = http.StatusOK
		}
		if rec.Code != wantStatus || strings.TrimSpace(rec.Body.String()) != want {
			t.Errorf("GET %s: %d %s, want %d %s", path, rec.Code, rec.Body, wantStatus, want)
		}
	}
}
