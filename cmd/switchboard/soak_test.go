package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestBenchSoakPrintConfig checks that `bench soak --print-config` prints a configuration
// the server accepts, with the hub's event handlers and the SignalR upstream at the
// soak's handler address.
func TestBenchSoakPrintConfig(t *testing.T) {
	out, err := run(t, "bench", "soak", "--print-config", "--handler-addr", "127.0.0.1:19999", "--hub", "longrun")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "soak.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("printed config is invalid: %v\n%s", err, out)
	}
	eh := cfg.Hubs["longrun"].EventHandlers
	if len(eh) != 1 || eh[0].URLTemplate != "http://127.0.0.1:19999/webpubsub/{hub}/{event}" || len(eh[0].SystemEvents) != 3 {
		t.Errorf("event handlers %+v", eh)
	}
	if up := cfg.SignalR.Upstreams; len(up) != 1 || up[0].HubPattern != "longrun" {
		t.Errorf("signalr upstreams %+v", up)
	}
}
