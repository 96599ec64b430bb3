// Package natstest runs a NATS server in process on a loopback port, for
// the tests of the cluster (it is imported by tests only).
package natstest

import (
	"net"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Server is a running NATS server.
type Server struct {
	*natsserver.Server
	t testing.TB
}

// Start runs a NATS server on 127.0.0.1, JetStream off, until the test
// ends; port 0 picks a free port.
func Start(t testing.TB, port int) *Server {
	t.Helper()
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	opts := &natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, MaxPayload: 4 << 20}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return &Server{Server: s, t: t}
}

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.Addr().(*net.TCPAddr).Port }

// URL returns the server's nats:// URL.
func (s *Server) URL() string { return s.ClientURL() }

// Stop shuts the server down and waits until it is.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}
