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
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

const crashKey = "kafka-crash-test-key"

// startSwitchboard runs the real program (this test binary as the CLI) with the extra
// arguments and returns its endpoint and process.
func startSwitchboard(t *testing.T, cfgFile, dataDir string, extra ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--config", cfgFile, "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--access-key", crashKey, "--set", "signalr.addr=", "--log-level", "warn"}, extra...)...)
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
		t.Fatalf("server process: %v", err)
	}
	ep, _, err := auth.ParseConnectionString(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("server printed %q: %v", line, err)
	}
	go io.Copy(io.Discard, lines)
	return ep, cmd
}

// groupSeqs reads the "seq" of every message of a group's history with the catch-up REST API.
func groupSeqs(t *testing.T, endpoint, group string) []int {
	t.Helper()
	keys, _ := auth.NewKeyRing(crashKey)
	var out []int
	after := uint64(0)
	for {
		u := endpoint + "/api/hubs/accounts/groups/" + group + "/messages"
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(http.MethodGet, u+"?api-version=2024-12-01&limit=1000&after="+strconv.FormatUint(after, 10), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("catch-up read of %s: %d %s", group, resp.StatusCode, b)
		}
		var page struct {
			Messages []struct {
				Offset uint64
				Data   struct{ Seq int }
			}
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("%v in %s", err, b)
		}
		if len(page.Messages) == 0 {
			return out
		}
		for _, m := range page.Messages {
			out = append(out, m.Data.Seq)
		}
		after = page.Messages[len(page.Messages)-1].Offset
	}
}

// TestKafkaCrashExactlyOnceIntoHistory produces records for history groups into a Kafka
// (kfake, in this process), SIGKILLs Switchboard while it delivers them, produces the rest,
// restarts it on the same data directory and expects every record in the history exactly
// once, in partition order: records sent but not yet committed when it died are redelivered
// and recognised by their idempotency key (topic/partition/offset).
func TestKafkaCrashExactlyOnceIntoHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	for _, ordering := range []string{"partition", "target"} {
		t.Run(ordering, func(t *testing.T) { testKafkaCrash(t, ordering) })
	}
}

func testKafkaCrash(t *testing.T, ordering string) {
	const parts, keys, perKey = 4, 8, 300 // 2,400 records
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parts, "account-updates"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	brokers := kf.ListenAddrs()[0]
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 100000, max_age: 1h}
connectors:
  - name: accounts
    type: kafka
    brokers: [%q]
    topics: [account-updates]
    consumer_group: switchboard
    start_offset: earliest
    session_timeout: 2s
    commit_interval: 1s   # long: the crash leaves many sent records uncommitted
    hub: accounts
    group: "customer:{key}"
    ordering: %s
`, brokers, ordering)), 0o600)
	dataDir := t.TempDir()

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produceRange := func(from, to int) { produceSeqs(t, prod, keys, parts, from, to) }
	total := func(ep string) int { return historyTotal(t, ep, keys) }

	ep, cmd := startSwitchboard(t, cfgFile, dataDir)
	produceRange(0, perKey/2)
	total0 := 0
	eventually.True(t, "a quarter of the records reach the history", 60*time.Second, func() bool {
		total0 = total(ep)
		return total0 >= keys*perKey/4
	})
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown, no final commit
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("killed with %d of %d records produced so far in the history", total0, keys*perKey/2)
	produceRange(perKey/2, perKey)

	restart := time.Now()
	ep, _ = startSwitchboard(t, cfgFile, dataDir)
	eventually.True(t, "every record reaches the history after the restart", 60*time.Second, func() bool {
		return total(ep) >= keys*perKey
	})
	t.Logf("after the restart, the history was complete in %v", time.Since(restart).Round(time.Millisecond))
	checkOnceInOrder(t, ep, keys, perKey, "record", "record once in partition order")
}
