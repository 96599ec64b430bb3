package server_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// settle waits until the goroutines and open files are back to the baseline;
// it fails when they never are.
func settle(t *testing.T, what string, goroutines, files int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), openFiles(t)
		if g <= goroutines && f <= files {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%s: %d goroutines and %d open files, baseline %d and %d; goroutines:\n%s",
				what, g, f, goroutines, files, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leakyConfig is a valid configuration whose server starts the event-handler
// workers, the history log (writer, trimmer, segment file) and the WebSocket
// writers before the SignalR listener is built.
func leakyConfig(t *testing.T, signalRAddr string) config.Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`hubs:
  chat:
    event_handlers:
      - url_template: "http://127.0.0.1:1/{hub}/{event}"
        system_events: [connected]
    history:
      - pattern: "room:*"
        max_messages: 100
        max_age: 1h
`), 0o600)
	cfg, err := config.Load(file, nil, []string{"server.addr=127.0.0.1:0", "signalr.addr=" + signalRAddr,
		"server.data_dir=" + t.TempDir(), "auth.access_keys=primary-key"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFailedServerReleasesEverything: a server.New that fails late (here, an
// invalid SignalR upstream, after history and the event handlers started), and
// a server whose Listen fails and that is then closed, leave no goroutine and
// no open file behind. They used to leak the event-handler workers, the history
// log's writer, trimmer and files, and the WebSocket writers, every time.
func TestFailedServerReleasesEverything(t *testing.T) {
	goroutines, files := runtime.NumGoroutine(), openFiles(t)
	for range 3 {
		cfg := leakyConfig(t, "127.0.0.1:0")
		// Config validation would refuse it; New must refuse it too, cleanly.
		cfg.SignalR.Upstreams = []config.SignalRUpstream{{URLTemplate: "http://127.0.0.1:1/{hub}/{category}/{event}", HubPattern: "a,,b"}}
		if srv, err := server.New(cfg, slog.New(slog.DiscardHandler)); err == nil {
			srv.Close()
			t.Fatal("New accepted an invalid SignalR upstream")
		}
	}
	settle(t, "after 3 failed New", goroutines, files)

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	goroutines, files = runtime.NumGoroutine(), openFiles(t)
	for range 3 {
		srv, err := server.New(leakyConfig(t, taken.Addr().String()), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Listen(); err == nil {
			t.Fatal("Listen succeeded on a port in use")
		}
		srv.Close()
	}
	settle(t, "after 3 failed Listen and Close", goroutines, files)
}
