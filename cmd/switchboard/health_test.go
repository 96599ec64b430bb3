package main

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestHealthCommand: `switchboard health` passes against a serving server,
// `--ready` once it is ready, and fails (exit status 1) against an address
// nobody answers on, and on a probe that is not 200.
func TestHealthCommand(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	ep := srv.Endpoint()
	if out, err := run(t, "health", "--url", ep); err != nil || strings.TrimSpace(out) != `{"status":"alive"}` {
		t.Fatalf("health: %v %q", err, out)
	}
	eventually.True(t, "health --ready to pass", 5*time.Second, func() bool {
		out, err := run(t, "health", "--ready", "--url", ep)
		return err == nil && strings.TrimSpace(out) == `{"status":"ready"}`
	})
	if _, err := run(t, "health", "--url", ep+"/nowhere"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404 probe passed: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "health", "--url", ep, "--timeout", "2s"); err == nil {
		t.Error("health passed against a stopped server")
	}
}
