// Package natstest runs a NATS server in process on a loopback port, for
// the tests of the cluster (it is imported by tests only).
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Server is a running NATS server.
type Server struct {
	*natsserver.Server
	t    testing.TB
	opts *natsserver.Options
}

// Start runs a NATS server on 127.0.0.1, JetStream off, until the test
// ends; port 0 picks a free port.
func Start(t testing.TB, port int) *Server {
	t.Helper()
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	return start(t, &natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, MaxPayload: 4 << 20})
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

// StartJetStream runs a NATS server with JetStream on (its store in a
// temporary directory of the test) until the test ends.
func StartJetStream(t testing.TB) *Server {
	t.Helper()
	return start(t, &natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true,
		MaxPayload: 4 << 20, JetStream: true, StoreDir: t.TempDir()})
}

// StartCluster runs n NATS servers with JetStream on, routed into one NATS
// cluster, until the test ends; it returns once JetStream has a leader.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = start(t, &natsserver.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoLog: true, NoSigs: true,
			MaxPayload: 4 << 20, JetStream: true, StoreDir: t.TempDir(),
			Cluster: natsserver.ClusterOpts{Name: "sbtest", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := false
		for _, s := range servers {
			ready = ready || s.JetStreamIsLeader()
		}
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				ready = false
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nats cluster: JetStream has no meta leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return servers
}

func start(t testing.TB, opts *natsserver.Options) *Server {
	t.Helper()
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
	opts.Port = s.Addr().(*net.TCPAddr).Port // a restart takes the same one
	return &Server{Server: s, t: t, opts: opts}
}

// Restart starts a stopped server again on the same ports, with the same
// options (and JetStream store): a NATS server that comes back.
func (s *Server) Restart() {
	s.t.Helper()
	opts := *s.opts
	n := start(s.t, &opts)
	s.Server, s.opts = n.Server, n.opts
}
