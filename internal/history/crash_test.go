package history_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// crashChildEnv names the data directory of a server process that the crash
// test starts by re-executing the test binary.
const crashChildEnv = "SWITCHBOARD_HISTORY_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		runCrashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runCrashChild serves on a loopback port with data directory dir and prints
// its endpoint; it runs until it is killed.
func runCrashChild(dir string) {
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(historyConfig), 0o600); err != nil {
		panic(err)
	}
	cfg, err := config.Load(cfgFile, nil, []string{"server.addr=127.0.0.1:0", "server.data_dir=" + dir, "auth.access_keys=" + testKey})
	if err != nil {
		panic(err)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	if err := srv.Listen(); err != nil {
		panic(err)
	}
	fmt.Printf("ENDPOINT %s\n", srv.Endpoint())
	srv.Serve(context.Background())
}

// startCrashChild starts a server process on dir and returns it with its
// endpoint.
func startCrashChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server process: %v", err)
	}
	ep, ok := strings.CutPrefix(strings.TrimSpace(line), "ENDPOINT ")
	if !ok {
		t.Fatalf("server process printed %q", line)
	}
	return cmd, ep
}

// TestCrashLosesNoAcceptedPublish kills the server process with SIGKILL
// while publishers write to a history group, three times, restarting it on
// the same data directory each time. Every publish that got a 202 must be in
// the history at the offset it was given, with its payload; the offsets must
// be contiguous; nothing that was not sent may be served (a torn tail is cut,
// never served).
func TestCrashLosesNoAcceptedPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	const group = "room:crash"
	var mu sync.Mutex
	acked := map[uint64]string{} // offset → payload, from the 202s
	attempted := map[string]bool{}
	for round := range 3 {
		cmd, ep := startCrashChild(t, dir)
		rest := newREST(ep)
		var acks atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					payload := fmt.Sprintf("r%d-p%d-%d-%s", round, p, i, strings.Repeat("x", 200))
					mu.Lock()
					attempted[payload] = true
					mu.Unlock()
					r, err := rest.send(group, payload, "")
					if err != nil {
						return // the server is gone
					}
					if r.status != http.StatusAccepted {
						t.Errorf("send: %+v", r)
						return
					}
					mu.Lock()
					if prev, dup := acked[r.offset]; dup {
						t.Errorf("offset %d acknowledged twice: %q and %q", r.offset, prev, payload)
					}
					acked[r.offset] = payload
					mu.Unlock()
					acks.Add(1)
				}
			}()
		}
		deadline := time.Now().Add(60 * time.Second)
		for acks.Load() < 300 && time.Now().Before(deadline) && !t.Failed() {
			time.Sleep(5 * time.Millisecond)
		}
		if err := cmd.Process.Kill(); err != nil { // SIGKILL, under load
			t.Fatal(err)
		}
		cmd.Wait()
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}
	}

	_, ep := startCrashChild(t, dir)
	h := newREST(ep).all(t, group)
	seen := map[string]bool{}
	for i, m := range h.Messages {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d has offset %d: offsets are not contiguous", i, m.Offset)
		}
		if !attempted[m.Data] {
			t.Fatalf("offset %d serves %q, which was never sent", m.Offset, m.Data)
		}
		if seen[m.Data] {
			t.Fatalf("offset %d serves %q a second time", m.Offset, m.Data)
		}
		seen[m.Data] = true
	}
	for off, payload := range acked {
		if off == 0 || off > uint64(len(h.Messages)) {
			t.Errorf("acknowledged offset %d (%.12s…) is not in the history of %d messages", off, payload, len(h.Messages))
			continue
		}
		if got := h.Messages[off-1].Data; got != payload {
			t.Errorf("acknowledged offset %d: history has %.12s…, the publisher was told %.12s…", off, got, payload)
		}
	}
	t.Logf("%d publishes acknowledged over 3 crashes, %d in the history", len(acked), len(h.Messages))
}

// BenchmarkRESTSend measures the latency of one REST send to a group (one
// request in flight, so ns/op is the round trip), to a group that keeps
// history (persisted and fsynced first) and to one that does not: the
// difference is what durability adds.
func BenchmarkRESTSend(b *testing.B) {
	srv := startServer(b, b.TempDir())
	rest := newREST(srv.Endpoint())
	for _, g := range []struct{ name, group string }{{"plain", "lobby"}, {"durable", "room:bench"}} {
		b.Run(g.name, func(b *testing.B) {
			payload := strings.Repeat("x", 1024)
			for b.Loop() {
				r, err := rest.send(g.group, payload, "")
				if err != nil || r.status != http.StatusAccepted {
					b.Fatalf("%+v %v", r, err)
				}
			}
		})
	}
}
