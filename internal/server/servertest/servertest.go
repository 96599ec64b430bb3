// Package servertest starts a whole Switchboard server on a loopback port,
// for tests of the packages above the server (CLI, load tool, end to end).
package servertest

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// Options configure a test server. It always listens on 127.0.0.1:0 with a
// fresh data directory; Settings ("section.key=value") and ConfigFile add
// to that.
type Options struct {
	ConfigFile string
	Settings   []string
}

// Server is a running server. Stop shuts it down (as SIGTERM does) and
// returns what Serve returned; it runs at the test's cleanup if not before.
type Server struct {
	*server.Server
	stop func() error
}

// Stop shuts the server down gracefully; later calls return the same result.
func (s *Server) Stop() error { return s.stop() }

// Start runs a server until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	settings := append([]string{"server.addr=127.0.0.1:0", "signalr.addr=127.0.0.1:0", "server.data_dir=" + t.TempDir()}, o.Settings...)
	cfg, err := config.Load(o.ConfigFile, nil, settings)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { stop() })
	return &Server{Server: srv, stop: stop}
}
