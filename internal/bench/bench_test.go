package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/pgtest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestMain lets the test binary act as a worker process for the re-exec path.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHBOARD_BENCH_TEST_WORKER") == "1" {
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	pgtest.Stop() // the outbox scenario's PostgreSQL, if a test started it
	os.Exit(code)
}

func startServer(t *testing.T) string {
	t.Helper()
	return servertest.Start(t, servertest.Options{}).ConnectionString()
}

func runOK(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != o.Runs {
		t.Fatalf("%d runs, want %d", len(rep.Runs), o.Runs)
	}
	for _, r := range rep.Runs {
		if r.Failed {
			t.Errorf("run %d failed: %v (%+v)", r.Run, r.Failures, r)
		}
		if r.Lost != 0 || r.Duplicated != 0 || r.Unexpected != 0 || r.OutOfOrder != 0 {
			t.Errorf("run %d: accounting %+v", r.Run, r.Accounting)
		}
		if len(r.ConnectErrors) > 0 || len(r.Disconnects) > 0 || len(r.SendErrors) > 0 || len(r.Errors) > 0 {
			t.Errorf("run %d: connect errors %v, disconnects %v, send errors %v, errors %v", r.Run, r.ConnectErrors, r.Disconnects, r.SendErrors, r.Errors)
		}
	}
	if rep.Failed {
		t.Errorf("report failed")
	}
	return rep
}

func TestScenarios(t *testing.T) {
	cs := startServer(t)
	base := Options{ConnString: cs, Workers: 0, SourceIPs: -1, Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}

	t.Run("fanout", func(t *testing.T) {
		o := base
		o.Scenario, o.Subscribers, o.Publishers, o.Messages, o.Runs = "fanout", 20, 2, 200, 2
		rep := runOK(t, o)
		for _, r := range rep.Runs {
			// Every subscriber gets every message of both publishers, warm-up included.
			if r.Received != r.Sent*20 || r.Expected != r.Sent*20 || r.Unique != r.Expected {
				t.Errorf("run %d: sent %d, received %d, expected %d, unique %d", r.Run, r.Sent, r.Received, r.Expected, r.Unique)
			}
			if r.Counted != 2*200*20 || r.Latency.Count != r.Counted {
				t.Errorf("run %d: counted %d, latency samples %d, want %d", r.Run, r.Counted, r.Latency.Count, 2*200*20)
			}
			if r.DeliveriesPerSec <= 0 || r.Latency.P50 <= 0 || r.Latency.Max < r.Latency.P99 || r.Connections != 20 {
				t.Errorf("run %d: figures %+v", r.Run, r)
			}
		}
	})
	t.Run("fanout-rate", func(t *testing.T) {
		o := base
		o.Scenario, o.Subscribers, o.Publishers, o.Messages, o.Rate, o.Warmup = "fanout", 5, 2, 20, 400, 0
		rep := runOK(t, o)
		if r := rep.Runs[0]; r.Sent != 40 || r.Counted != 200 {
			t.Errorf("sent %d counted %d, want 40 and 200", r.Sent, r.Counted)
		}
	})
	t.Run("rooms", func(t *testing.T) {
		o := base
		o.Scenario, o.Groups, o.Members, o.Rate, o.Duration = "rooms", 3, 4, 20, 300*time.Millisecond
		r := runOK(t, o).Runs[0]
		// Each member hears every member of its room, itself included (noEcho false).
		if r.Connections != 12 || r.Sent == 0 || r.Received != r.Sent*4 || r.Expected != r.Sent*4 {
			t.Errorf("conns %d sent %d received %d expected %d", r.Connections, r.Sent, r.Received, r.Expected)
		}
	})
	t.Run("users", func(t *testing.T) {
		o := base
		o.Scenario, o.Conns, o.Users, o.Publishers, o.Messages = "users", 30, 7, 2, 50
		r := runOK(t, o).Runs[0]
		if r.Connections != 30 || r.Received == 0 || r.Expected != r.Received || r.Counted < 100 {
			t.Errorf("conns %d sent %d received %d expected %d counted %d", r.Connections, r.Sent, r.Received, r.Expected, r.Counted)
		}
	})
	t.Run("idle", func(t *testing.T) {
		o := base
		o.Scenario, o.Conns, o.Groups, o.Hold = "idle", 40, 3, 200*time.Millisecond
		r := runOK(t, o).Runs[0]
		if r.Connections != 40 || r.Server.RSSLoaded <= 0 {
			t.Errorf("conns %d server %+v", r.Connections, r.Server)
		}
	})
	t.Run("connect", func(t *testing.T) {
		o := base
		o.Scenario, o.Conns, o.Dialers, o.Runs = "connect", 60, 8, 2
		rep := runOK(t, o)
		for _, r := range rep.Runs {
			if r.Connections != 60 || r.HandshakesPerSec <= 0 || r.ConnectLatency.Count != 60 {
				t.Errorf("run %d: conns %d handshakes/s %f latency %+v", r.Run, r.Connections, r.HandshakesPerSec, r.ConnectLatency)
			}
		}
	})
}

// TestWorkerProcesses runs fanout with two worker processes: the test binary re-executed.
func TestWorkerProcesses(t *testing.T) {
	cs := startServer(t)
	useTestWorkers(t)
	o := Options{ConnString: cs, Scenario: "fanout", Subscribers: 20, Publishers: 2, Messages: 100, Workers: 2, SourceIPs: 4, Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}
	r := runOK(t, o).Runs[0]
	if r.Connections != 20 || r.Counted != 2*100*20 || r.Received != r.Sent*20 {
		t.Errorf("conns %d counted %d sent %d received %d", r.Connections, r.Counted, r.Sent, r.Received)
	}
	if runtime.GOOS == "linux" && r.ToolCPUPercent <= 0 {
		t.Errorf("tool CPU %.1f%%: the coordinator's and the workers' CPU were not measured", r.ToolCPUPercent)
	}
}

// useTestWorkers makes worker processes re-execute the test binary until the test ends.
func useTestWorkers(t *testing.T) {
	old := WorkerCommand
	WorkerCommand = func() (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SWITCHBOARD_BENCH_TEST_WORKER=1")
		return cmd, nil
	}
	t.Cleanup(func() { WorkerCommand = old })
}

// TestFailedRunIsReported checks that lost and duplicated messages make a run FAILED.
func TestFailedRunIsReported(t *testing.T) {
	tracks := map[uint32]*seqTrack{0: newSeqTrack()}
	tracks[0].add(0)
	tracks[0].add(0)
	r := RunResult{Accounting: account(tracks, map[uint32]uint64{0: 3}), Connections: 1}
	judge(&r, Options{Scenario: "idle", Conns: 1})
	if !r.Failed || len(r.Failures) != 2 {
		t.Fatalf("failed %v failures %v", r.Failed, r.Failures)
	}
}

// TestDurableScenario runs the durable scenario against a server that keeps
// history for its group, and checks that it refuses a server that does not.
func TestDurableScenario(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("hubs:\n  bench:\n    history:\n      - {pattern: \""+DurableGroup+"\", max_messages: 100000, max_age: 1h}\n"), 0o600)
	cs := servertest.Start(t, servertest.Options{ConfigFile: cfg}).ConnectionString()
	o := Options{ConnString: cs, Scenario: "durable", Subscribers: 10, Publishers: 4, Messages: 100, Runs: 1, SourceIPs: -1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}
	rep := runOK(t, o)
	if r := rep.Runs[0]; r.Counted != 4*100*10 || r.DeliveriesPerSec <= 0 {
		t.Errorf("durable run: %+v", r)
	}
	o.ConnString = startServer(t) // no history
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err == nil && !rep.Runs[0].Failed {
		t.Error("durable scenario passed against a server without history")
	}
}

// TestPresenceScenario runs the presence scenario against a server without
// member notifications (joins and leaves, none notified) and one with them
// (the clients count the notifications they get).
func TestPresenceScenario(t *testing.T) {
	o := Options{ConnString: startServer(t), Scenario: "presence", Conns: 20, Users: 10, Groups: 2, Publishers: 2, Messages: 50, Runs: 1, SourceIPs: -1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second}
	rep := runOK(t, o)
	if r := rep.Runs[0]; r.Sent != 2*2*50 || r.OpsPerSec <= 0 || r.Notifications != 0 || r.Latency.Count != 2*2*50 {
		t.Errorf("presence off: sent %d, %v/s, %d notifications, %d latencies", r.Sent, r.OpsPerSec, r.Notifications, r.Latency.Count)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("hubs:\n  bench:\n    presence_notify: [\"presence*\"]\n"), 0o600)
	o.ConnString = servertest.Start(t, servertest.Options{ConfigFile: cfg}).ConnectionString()
	rep = runOK(t, o)
	if r := rep.Runs[0]; r.Sent != 2*2*50 || r.Notifications == 0 {
		t.Errorf("presence on: sent %d, %d notifications (want some)", r.Sent, r.Notifications)
	}
}
