package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// probe GETs path on srv (no credentials) and returns its status and body.
func probe(t *testing.T, srv *servertest.Server, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.Endpoint()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestProbes: /healthz and /readyz answer anonymous GET and HEAD once the
// server serves, and refuse other methods.
func TestProbes(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	eventually.True(t, "/readyz to answer 200", 5*time.Second, func() bool {
		st, _ := probe(t, srv, http.MethodGet, "/readyz")
		return st == http.StatusOK
	})
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/healthz", `{"status":"alive"}`},
		{http.MethodGet, "/readyz", `{"status":"ready"}`},
		{http.MethodGet, "/api/health/ready", `{"status":"ready"}`},
		{http.MethodHead, "/readyz", ``},
	} {
		if st, body := probe(t, srv, c.method, c.path); st != http.StatusOK || body != c.body {
			t.Errorf("%s %s: %d %q, want 200 %q", c.method, c.path, st, body, c.body)
		}
	}
	if st, _ := probe(t, srv, http.MethodPost, "/readyz"); st != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", st)
	}
}

// TestReadinessFollowsNATS: a clustered node is not ready while it has no
// NATS connection, and ready again once it reconnected; alive throughout.
func TestReadinessFollowsNATS(t *testing.T) {
	ns := natstest.Start(t, 0)
	port := ns.Port()
	n := startCluster(t, ns.URL(), "a")[0]
	eventually.True(t, "/readyz to answer 200", 5*time.Second, func() bool {
		st, _ := probe(t, n, http.MethodGet, "/readyz")
		return st == http.StatusOK
	})
	ns.Stop()
	var body string
	eventually.True(t, "/readyz to answer 503 without NATS", 10*time.Second, func() bool {
		var st int
		st, body = probe(t, n, http.MethodGet, "/readyz")
		return st == http.StatusServiceUnavailable
	})
	if want := `{"status":"unavailable","reasons":["cluster: not connected to NATS"]}`; body != want {
		t.Errorf("body %s, want %s", body, want)
	}
	if st, _ := probe(t, n, http.MethodGet, "/healthz"); st != http.StatusOK {
		t.Errorf("/healthz without NATS: %d", st)
	}
	natstest.Start(t, port)
	eventually.True(t, "/readyz to answer 200 once NATS is back", 30*time.Second, func() bool {
		st, _ := probe(t, n, http.MethodGet, "/readyz")
		return st == http.StatusOK
	})
}
