package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// outboxHeld returns the partitions the node at endpoint holds (/admin/connectors).
func outboxHeld(t *testing.T, endpoint string) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for _, c := range adminConnectors[outbox.Status](t, endpoint) {
		for _, p := range c.Held {
			out[p.Partition] = true
		}
	}
	return out
}

// outboxSent returns the rows the node at endpoint sent.
func outboxSent(t *testing.T, endpoint string) int64 {
	t.Helper()
	var n int64
	for _, c := range adminConnectors[outbox.Status](t, endpoint) {
		n += c.Records.Sent
	}
	return n
}

// TestOutboxClusterNodeKilled: two Switchboard processes of a cluster (NATS with JetStream,
// which holds the history groups) share one outbox's 8 partitions, 4 each. One is SIGKILLed
// while both send; its connection, and so its advisory locks, die with it, the other takes
// its 8 partitions, and every row (including the ones the killed node had sent but not yet
// deleted) is in the history exactly once, in id order per customer.
func TestOutboxClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	const custs, perCust = 16, 400 // 6,400 rows
	dsn := pgtest.Start(t).NewDatabase(t)
	db := pgtest.Connect(t, dsn)
	ctx := context.Background()
	ddl, err := outbox.Schema("switchboard_outbox", 8, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartJetStream(t)
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 100000, max_age: 1h}
connectors:
  - name: chat
    type: postgres_outbox
    dsn: %q
    hub: accounts
    group: "customer:{key}"
    ordering: target
    batch_size: 2000   # large: the kill lands with a batch sent and not deleted
`, dsn)), 0o600)
	insertRange := func(from, to int) {
		var keys []string
		var payloads [][]byte
		for i := from; i < to; i++ {
			for c := range custs {
				keys = append(keys, fmt.Sprintf("c%d", c))
				payloads = append(payloads, []byte(fmt.Sprintf(`{"seq":%d}`, i)))
			}
		}
		if _, err := db.Exec(ctx, `INSERT INTO switchboard_outbox (partition_key, payload)
			SELECT k, p FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r(k, p, n) ORDER BY n`, keys, payloads); err != nil {
			t.Fatal(err)
		}
	}
	total := func(ep string) int { return historyTotal(t, ep, custs) }
	epA, cmdA := startSwitchboard(t, cfgFile, t.TempDir(), "--set", "cluster.nats_url="+ns.URL(), "--set", "server.node_id=a")
	epB, _ := startSwitchboard(t, cfgFile, t.TempDir(), "--set", "cluster.nats_url="+ns.URL(), "--set", "server.node_id=b")
	eventually.True(t, "the two nodes hold 4 partitions each", 30*time.Second, func() bool {
		return len(outboxHeld(t, epA)) == 4 && len(outboxHeld(t, epB)) == 4
	})
	insertRange(0, perCust/2)
	// Kill node a once it has sent some rows: its batches (up to 2,000 rows, one transaction
	// each) are then in flight, sent and not deleted.
	eventually.True(t, "node a sends", 60*time.Second, func() bool { return outboxSent(t, epA) >= 50 })
	if err := cmdA.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmdA.Wait()
	var left int
	db.QueryRow(ctx, "SELECT count(*) FROM switchboard_outbox").Scan(&left)
	t.Logf("node a killed with %d rows in the history, %d in the outbox", total(epB), left)
	insertRange(perCust/2, perCust)
	eventually.True(t, "node b takes every partition", 30*time.Second, func() bool { return len(outboxHeld(t, epB)) == 8 })
	eventually.True(t, "every row is sent and deleted", 60*time.Second, func() bool {
		var n int
		db.QueryRow(ctx, "SELECT count(*) FROM switchboard_outbox").Scan(&n)
		return n == 0
	})
	t.Logf("%v rows sent again by node b were answered from the idempotency index",
		promValue(t, epB, `switchboard_connector_records_total{connector="chat",result="replayed"}`))
	checkOnceInOrder(t, epB, custs, perCust, "message", "row once in id order")
}
