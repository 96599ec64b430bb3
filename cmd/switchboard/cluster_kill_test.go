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
	"github.com/switchboardhq/switchboard/internal/wstest"
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
// A client of the killed node, a member of the group, reconnects to another node and joins
// again with its last offset: it ends with the whole stream, each message once, in order.
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
	sub := dialMember(t, keys, eps[2])
	sub.join(t, nil, "")
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
	// The client of the killed node lost its connection: it comes back on node a with the
	// last offset it got, and must end with the whole stream.
	got := sub.until(t, -1) // what it got before its node died
	last, epoch := uint64(len(got)), sub.epoch
	t.Logf("the member of the killed node got %d messages before it died; it rejoins on node a from there", last)
	for i, f := range got {
		if f.Offset != uint64(i+1) {
			t.Fatalf("member of the killed node: message %d has offset %d", i, f.Offset)
		}
	}
	again := dialMember(t, keys, eps[0])
	if ack := again.join(t, &last, epoch); !ack.Recovered {
		t.Fatalf("rejoin on another node from offset %d: not recovered: %+v", last, ack)
	}
	rest := again.until(t, int(top-last))
	for i, f := range rest {
		if f.Offset != last+uint64(i+1) || f.Data != data[f.Offset-1] {
			t.Fatalf("after the rejoin, message %d: offset %d %q, want %d %q", i, f.Offset, f.Data, last+uint64(i+1), data[last+uint64(i)])
		}
	}
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

// member is a json.webpubsub.azure.v1 client of group room:kill.
type member struct {
	ws     *wstest.Client
	frames chan memberFrame
	epoch  string
	early  []memberFrame // messages that came before the join's ack (a replay's)
}

type memberFrame struct {
	Type      string `json:"type"`
	Success   bool   `json:"success"`
	Recovered bool   `json:"recovered"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Data      string `json:"data"`
	Event     string `json:"event"`
}

func dialMember(t *testing.T, keys *auth.KeyRing, ep string) *member {
	t.Helper()
	tok, _ := keys.MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{Roles: []string{"webpubsub.joinLeaveGroup"}})
	c := wstest.Dial(t, "ws"+strings.TrimPrefix(ep, "http")+"/client/hubs/chat?access_token="+tok, "json.webpubsub.azure.v1")
	c.ReadTimeout = 0 // the reader ends with the connection
	m := &member{ws: c, frames: make(chan memberFrame, 1<<16)}
	go func() {
		defer close(m.frames)
		for {
			p, _, err := c.ReadErr()
			if err != nil {
				return
			}

			var f memberFrame
			json.Unmarshal(p, &f)
			m.frames <- f
		}
	}()
	t.Cleanup(c.Close)
	if f := m.next(t); f.Event != "connected" {
		t.Fatalf("first frame %+v", f)
	}
	return m
}

func (m *member) next(t *testing.T) memberFrame {
	t.Helper()
	select {
	case f := <-m.frames:
		return f
	case <-time.After(30 * time.Second):
		t.Fatal("no frame within 30s")
	}
	return memberFrame{}
}

// join joins room:kill, from offset from when not nil, and returns the ack.
func (m *member) join(t *testing.T, from *uint64, epoch string) memberFrame {
	t.Helper()
	req := map[string]any{"type": "joinGroup", "group": "room:kill", "ackId": 1}
	if from != nil {
		req["offset"], req["epoch"] = *from, epoch
	}
	b, _ := json.Marshal(req)
	m.ws.WriteText(b)
	for {
		f := m.next(t)
		switch f.Type {
		case "ack":
			if !f.Success {
				t.Fatalf("join: %+v", f)
			}
			m.epoch = f.Epoch
			return f
		case "message":
			m.early = append(m.early, f)
		}
	}
}

// until returns n messages (-1: every message until the connection ends).
func (m *member) until(t *testing.T, n int) []memberFrame {
	t.Helper()
	out := m.early
	m.early = nil
	for n < 0 || len(out) < n {
		var f memberFrame
		var ok bool
		select {
		case f, ok = <-m.frames:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d messages, then nothing within 30s", len(out))
		}
		if !ok {
			if n >= 0 {
				t.Fatalf("the connection ended after %d messages", len(out))
			}
			return out
		}
		if f.Type == "message" {
			out = append(out, f)
		}
	}
	return out
}
