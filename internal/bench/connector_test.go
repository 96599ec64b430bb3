package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/switchboardhq/switchboard/internal/connector/kafka"
	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/pgtest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestConnectorScenario runs the connector scenario against a server whose Kafka connector
// reads an in-process kfake into history groups: every record produced reaches its group's
// subscribers once, in order.
func TestConnectorScenario(t *testing.T) {
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench-connector"),
		kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`hubs:
  bench:
    history:
      - {pattern: "conn*", max_messages: 100000, max_age: 1h}
connectors:
  - name: bench
    type: kafka
    brokers: [%q]
    topics: [bench-connector]
    consumer_group: bench
    start_offset: earliest
    hub: bench
    group: "{key}"
    content_type: text/plain
`, kf.ListenAddrs()[0])), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfg, Settings: []string{"history.fsync=none"}})
	o := Options{Scenario: "connector", ConnString: srv.ConnectionString(), Brokers: kf.ListenAddrs(), Workers: 0, SourceIPs: -1,
		Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second, Subscribers: 8, Groups: 4, Messages: 100}
	var progress lockedBuffer
	o.Progress = &progress
	waitAssigned(t, srv)
	rep := runOK(t, o)
	r := rep.Runs[0]
	if r.Counted != 8*100 || r.Received != r.Sent*2 || r.Latency.Count != r.Counted || r.DeliveriesPerSec <= 0 {
		t.Errorf("sent %d, received %d, counted %d, latency samples %d", r.Sent, r.Received, r.Counted, r.Latency.Count)
	}
	// The producer's share of the latency: every record acknowledged, warm-up included.
	if want := fmt.Sprintf("kafka produce: %d records, produced to acknowledged p50 ", r.Sent); !strings.Contains(progress.String(), want) {
		t.Errorf("progress output has no %q:\n%s", want, progress.String())
	}
}

func waitAssigned(t *testing.T, srv *servertest.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range srv.Connectors() {
			if k, ok := c.(kafka.Status); ok && len(k.Partitions) == 4 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the connector never got its partitions")
}

// TestConnectorScenarioOutbox runs the connector scenario with --dsn: rows inserted into a
// real PostgreSQL outbox that the server's postgres_outbox connector reads into history
// groups reach their subscribers once, in order.
func TestConnectorScenarioOutbox(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	ddl, err := outbox.Schema("switchboard_outbox", 4, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgtest.Connect(t, dsn).Exec(context.Background(), ddl); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`hubs:
  bench:
    history:
      - {pattern: "conn*", max_messages: 100000, max_age: 1h}
connectors:
  - name: bench
    type: postgres_outbox
    dsn: %q
    hub: bench
    group: "{key}"
    content_type: text/plain
    ordering: target
`, dsn)), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: cfg, Settings: []string{"history.fsync=none"}})
	o := Options{Scenario: "connector", ConnString: srv.ConnectionString(), DSN: dsn, Workers: 0, SourceIPs: -1,
		Runs: 1, Warmup: 20 * time.Millisecond, Drain: 10 * time.Second, Subscribers: 8, Groups: 4, Messages: 100}
	var progress lockedBuffer
	o.Progress = &progress
	rep := runOK(t, o)
	r := rep.Runs[0]
	if r.Counted != 8*100 || r.Received != r.Sent*2 || r.Latency.Count != r.Counted || r.DeliveriesPerSec <= 0 {
		t.Errorf("sent %d, received %d, counted %d, latency samples %d", r.Sent, r.Received, r.Counted, r.Latency.Count)
	}
	// The INSERTs' share of the latency: every row inserted, warm-up included.
	if want := fmt.Sprintf("outbox inserts: %d rows, queued to committed p50 ", r.Sent); !strings.Contains(progress.String(), want) {
		t.Errorf("progress output has no %q:\n%s", want, progress.String())
	}
}

// lockedBuffer is a bytes.Buffer for writers on several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
