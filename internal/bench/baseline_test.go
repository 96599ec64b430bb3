package bench

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/bench/baseline"
)

// TestBaseline runs the scenarios the baseline server is for against it: every message
// reaches every subscriber once and in order, every connection opens.
func TestBaseline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- baseline.New().Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	base := Options{ConnString: auth.ConnectionString("http://"+ln.Addr().String(), baseline.AnyKey),
		Workers: 0, SourceIPs: -1, Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}

	o := base
	o.Scenario, o.Subscribers, o.Publishers, o.Messages = "fanout", 20, 2, 200
	r := runOK(t, o).Runs[0]
	if r.Received != r.Sent*20 || r.Counted != 2*200*20 {
		t.Errorf("fanout: sent %d, received %d, counted %d", r.Sent, r.Received, r.Counted)
	}

	o = base
	o.Scenario, o.Conns, o.Dialers, o.Warmup = "connect", 60, 8, 0
	if r := runOK(t, o).Runs[0]; r.Connections != 60 || r.HandshakesPerSec <= 0 {
		t.Errorf("connect: conns %d, handshakes/s %f", r.Connections, r.HandshakesPerSec)
	}
}
