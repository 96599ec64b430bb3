package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

const killTestKey = "cluster-kill-test-key-0123456789"

// startNode runs `switchboard serve` as a process of its own on the NATS server at natsURL
// and returns its Web PubSub endpoint and the process.
func startNode(t *testing.T, natsURL, id, configFile string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--config", configFile, "--addr", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--access-key", killTestKey, "--log-level", "error",
		"--set", "signalr.addr=127.0.0.1:0", "--set", "cluster.nats_url="+natsURL, "--set", "server.node_id="+id)
	cmd.Env = append(os.Environ(), runCLIEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewReader(out)
	line, err := lines.ReadString('\n')
	if err != nil {
		t.Fatalf("node %s: %v", id, err)
	}
	ep, _, err := auth.ParseConnectionString(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("node %s printed %q: %v", id, line, err)
	}
	go io.Copy(io.Discard, lines)
	eventually.Nil(t, 30*time.Second, func() error {
		resp, err := http.Get(ep + "/api/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("node %s not ready: %d", id, resp.StatusCode)
		}
		return nil
	})
	return ep, cmd
}

// TestClusterHistorySurvivesSIGKILL runs three switchboard processes on one NATS server with
// JetStream, publishers sending to a history group through each of them, and kills one node
// with SIGKILL mid-run. Every send answered 202 (by any node, the killed one included) must be
// in the history afterwards, at the offset its answer gave, and the history must have no gap.
func TestClusterHistorySurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ns := natstest.StartJetStream(t)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte("hubs:\n  chat:\n    history:\n      - {pattern: \"room:*\", max_messages: 100000, max_age: 720h}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var eps []string
	var cmds []*exec.Cmd
	for _, id := range []string{"a", "b", "c"} {
		ep, cmd := startNode(t, ns.URL(), id, cfgFile)
		eps, cmds = append(eps, ep), append(cmds, cmd)
	}
	keys, _ := auth.NewKeyRing(killTestKey)
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(ep, payload string) (int, uint64, error) {
		u := ep + "/api/hubs/chat/groups/room:kill/:send"
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		off, _ := strconv.ParseUint(resp.Header.Get("X-Switchboard-Offset"), 10, 64)
		return resp.StatusCode, off, nil
	}
	var mu sync.Mutex
	accepted := map[uint64]string{}
	var total atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, ep := range eps {
		for p := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					payload := fmt.Sprintf("n%d-p%d-%d", i, p, k)
					status, off, err := send(ep, payload)
					if err != nil && i == 2 {
						return // the killed node
					}
					if status == http.StatusAccepted {
						mu.Lock()
						if prev, dup := accepted[off]; dup || off == 0 {
							t.Errorf("offset %d answered to %q and %q", off, prev, payload)
						}
						accepted[off] = payload
						mu.Unlock()
						total.Add(1)
					}
				}
			}()
		}
	}
	for total.Load() < 150 {
		time.Sleep(5 * time.Millisecond)
	}
	cmds[2].Process.Kill() // SIGKILL
	killedAt := total.Load()
	for total.Load() < killedAt+150 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	// The whole history, read through a surviving node.
	var offsets []uint64
	var data []string
	var top uint64
	for after := uint64(0); ; {
		u := eps[0] + "/api/hubs/chat/groups/room:kill/messages"
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s?after=%d&limit=1000", u, after), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Offset   uint64 `json:"offset"`
			Oldest   uint64 `json:"oldest"`
			Messages []struct {
				Offset uint64 `json:"offset"`
				Data   string `json:"data"`
			} `json:"messages"`
			NextLink *string `json:"nextLink"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("catch-up read after %d: %d %v", after, resp.StatusCode, err)
		}
		top = page.Offset
		for _, m := range page.Messages {
			offsets, data = append(offsets, m.Offset), append(data, m.Data)
		}
		if page.NextLink == nil {
			break
		}
		after = page.Messages[len(page.Messages)-1].Offset
	}
	t.Logf("%d sends answered 202 (%d before the kill); the history holds %d messages", len(accepted), killedAt, len(offsets))
	if uint64(len(offsets)) != top {
		t.Fatalf("the history holds %d messages up to offset %d: a gap", len(offsets), top)
	}
	for i, off := range offsets {
		if off != uint64(i+1) {
			t.Fatalf("history message %d has offset %d: a gap", i, off)
		}
		if want, ok := accepted[off]; ok && data[i] != want {
			t.Fatalf("offset %d holds %q, its 202 said %q", off, data[i], want)
		}
	}
	for off, payload := range accepted {
		if off > top {
			t.Errorf("%q was answered 202 at offset %d but the history ends at %d", payload, off, top)
		}
	}
}
