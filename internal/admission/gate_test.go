package admission

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// TestGateRefusesBeyondMax: at the limit a request that opens a connection gets 503
// with Retry-After and a reason, counted; other requests and the polls of open
// connections pass; a request inside its handler counts.
func TestGateRefusesBeyondMax(t *testing.T) {
	reg := prometheus.NewRegistry()
	var sockets atomic.Int64
	g, err := New(Config{Max: 2, Open: func() int { return int(sockets.Load()) }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	inside := make(chan struct{})
	release := make(chan struct{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			inside <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := g.Handler(next, func(r *http.Request) Kind {
		switch {
		case strings.HasPrefix(r.URL.Path, "/open"):
			return Opens
		case r.URL.Path == "/hold":
			return Holds
		}
		return Other
	})
	do := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := do("/open"); rec.Code != http.StatusNoContent {
		t.Fatalf("below the limit: %d", rec.Code)
	}
	sockets.Store(1)
	var held sync.WaitGroup
	held.Go(func() { do("/hold") }) // a held poll: 1 socket + 1 poll = the limit
	<-inside
	if got := g.Open(); got != 2 {
		t.Fatalf("Open() = %d, want 2", got)
	}
	rec := do("/open")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "5" ||
		!strings.Contains(rec.Body.String(), "limits.max_connections") {
		t.Fatalf("at the limit: %d %q %q", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	if rec := do("/api/health"); rec.Code != http.StatusNoContent {
		t.Fatalf("REST at the limit: %d", rec.Code)
	}
	held.Go(func() { // never refused, though over the limit
		if rec := do("/hold"); rec.Code != http.StatusNoContent {
			t.Errorf("a poll over the limit: %d", rec.Code)
		}
	})
	<-inside
	close(release)
	held.Wait()
	if got := metrictest.Value(t, reg, "switchboard_admission_refused_total", "reason", "max_connections"); got != 1 {
		t.Fatalf("refusals counted: %v, want 1", got)
	}
	sockets.Store(0)
	if rec := do("/open"); rec.Code != http.StatusNoContent {
		t.Fatalf("after connections closed: %d", rec.Code)
	}
}

// TestGateNoLimit: Max 0 refuses nothing.
func TestGateNoLimit(t *testing.T) {
	g, err := New(Config{Open: func() int { return 1 << 20 }})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(*http.Request) Kind { return Opens })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("no limit: %d", rec.Code)
	}
}

func TestMaxFor(t *testing.T) {
	for files, want := range map[uint64]int{0: 0, 1 << 40: 0, 64: 32, 100: 50, 1024: 922, 65536: 58983, 2: 1} {
		if got := MaxFor(files); got != want {
			t.Errorf("MaxFor(%d) = %d, want %d", files, got, want)
		}
	}
}
