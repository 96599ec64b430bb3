package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// TestOutboxCrashExactlyOnceIntoHistory inserts outbox rows for history groups into a real
// PostgreSQL, SIGKILLs Switchboard while it sends them (its transaction in flight is rolled
// back by the database: rows sent but not yet deleted stay), inserts the rest, restarts it on
// the same data directory and expects every row in the history exactly once, in id order per
// conversation: the rows sent again are recognised by their idempotency key (connector,
// table, partition and id).
func TestOutboxCrashExactlyOnceIntoHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	for _, ordering := range []string{"partition", "target"} {
		t.Run(ordering, func(t *testing.T) { testOutboxCrash(t, ordering) })
	}
}

func testOutboxCrash(t *testing.T, ordering string) {
	const convs, perConv = 8, 400 // 3,200 rows
	dsn := pgtest.Start(t).NewDatabase(t)
	db := pgtest.Connect(t, dsn)
	ctx := context.Background()
	ddl, err := outbox.Schema("switchboard_outbox", 4, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 100000, max_age: 1h}
connectors:
  - name: chat
    type: postgres_outbox
    dsn: %q
    table: switchboard_outbox
    batch_size: 1000   # large: the crash leaves many rows sent and not deleted
    hub: accounts
    group: "customer:{value.customer}"
    ordering: %s
`, dsn, ordering)), 0o600)
	dataDir := t.TempDir()
	// One statement (and transaction) per range: the rows arrive faster than they are sent.
	insertRange := func(from, to int) {
		var keys []string
		var payloads [][]byte
		for i := from; i < to; i++ {
			for c := range convs {
				// Two customers per partition key: a partition's rows go to several groups.
				keys = append(keys, fmt.Sprintf("k%d", c/2))
				payloads = append(payloads, []byte(fmt.Sprintf(`{"customer":"c%d","seq":%d}`, c, i)))
			}
		}
		if _, err := db.Exec(ctx, `INSERT INTO switchboard_outbox (partition_key, payload)
			SELECT k, p FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r(k, p, n) ORDER BY n`, keys, payloads); err != nil {
			t.Fatal(err)
		}
	}
	total := func(ep string) int { return historyTotal(t, ep, convs) }

	ep, cmd := startSwitchboard(t, cfgFile, dataDir)
	insertRange(0, perConv/2)
	total0 := 0
	eventually.True(t, "a quarter of the rows reach the history", 60*time.Second, func() bool {
		total0 = total(ep)
		return total0 >= convs*perConv/4
	})
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown
		t.Fatal(err)
	}
	cmd.Wait()
	var left int
	db.QueryRow(ctx, "SELECT count(*) FROM switchboard_outbox").Scan(&left)
	t.Logf("killed with %d rows in the history, %d of %d inserted so far still in the outbox", total0, left, convs*perConv/2)
	insertRange(perConv/2, perConv)

	ep, _ = startSwitchboard(t, cfgFile, dataDir)
	eventually.True(t, "every row is sent and deleted after the restart", 60*time.Second, func() bool {
		var n int
		db.QueryRow(ctx, "SELECT count(*) FROM switchboard_outbox").Scan(&n)
		return n == 0
	})
	replayed := promValue(t, ep, `switchboard_connector_records_total{connector="chat",result="replayed"}`)
	t.Logf("after the restart, %v rows were sent again and answered from the idempotency index", replayed)
	checkOnceInOrder(t, ep, convs, perConv, "message", "row once in id order")
}

// promValue returns the value of the /metrics sample that starts with prefix, 0 when absent.
func promValue(t *testing.T, endpoint, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}
