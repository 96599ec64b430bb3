package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	hist "github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// refusingHistory refuses appends while refuse is set, as a full disk does (only to group
// only, when it is set).
type refusingHistory struct {
	*hist.Service
	refuse atomic.Bool
	only   string
}

func (r *refusingHistory) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	if r.refuse.Load() && (r.only == "" || r.only == group) {
		return nil, core.ErrHistoryUnavailable
	}
	return r.Service.Append(ctx, hub, group, m)
}

// TestOutboxDeletesOnlyAcceptedSends: a row whose send is refused (history unavailable)
// stays in the table, through a connector stopped meanwhile; the next one sends it once,
// then deletes it. With processed: mark, the row is kept and marked instead.
func TestOutboxDeletesOnlyAcceptedSends(t *testing.T) {
	for _, mark := range []bool{false, true} {
		name := map[bool]string{false: "delete", true: "mark"}[mark]
		t.Run(name, func(t *testing.T) { testDeletesOnlyAcceptedSends(t, mark) })
	}
}

// directConnector runs outbox connectors on dsn into a core node whose history is rh's.
type directConnector struct {
	t       *testing.T
	dsn     string
	reg     *prometheus.Registry
	h       *hist.Service
	rh      *refusingHistory
	node    *core.Node
	shared  *connector.Metrics
	om      *outbox.Metrics
	mapping *connector.Mapping
}

func newDirect(t *testing.T, dsn string) *directConnector {
	reg := prometheus.NewRegistry()
	h, err := hist.New(hist.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: hist.FsyncNone, Registerer: reg,
		Policies: hist.Policies{"chat": {{Pattern: "conversation:*", Retention: hist.Retention{MaxMessages: 100, MaxAge: time.Hour}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	rh := &refusingHistory{Service: h}
	node, err := core.NewNode(core.Config{History: rh, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := connector.NewMetrics(reg)
	om, _ := outbox.NewMetrics(reg)
	mapping, err := connector.NewMapping(connector.Config{Hub: "chat", Group: "conversation:{key}"})
	if err != nil {
		t.Fatal(err)
	}
	return &directConnector{t: t, dsn: dsn, reg: reg, h: h, rh: rh, node: node, shared: shared, om: om, mapping: mapping}
}

// run starts a connector with cfg (its name, DSN, table and metrics filled in) and returns
// the function that stops it.
func (d *directConnector) run(cfg outbox.Config) (stop func()) {
	t := d.t
	cfg.Name, cfg.DSN, cfg.Table, cfg.Metrics = "chat", d.dsn, "switchboard_outbox", d.om
	cfg.PollInterval, cfg.MaxTx, cfg.StopGrace = 50*time.Millisecond, 200*time.Millisecond, 50*time.Millisecond
	c, err := outbox.New(cfg, func(dead connector.DeadLetter) (*connector.Deliverer, error) {
		return connector.NewDeliverer(connector.DeliverConfig{Name: "chat", Mapping: d.mapping, Node: d.node,
			Sends: durable.Sender{Keys: d.h.Idempotency(), Replays: d.h}, Metrics: d.shared,
			Backoff: connector.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func testDeletesOnlyAcceptedSends(t *testing.T, mark bool) {
	dsn, db := outboxDB(t, 2)
	d := newDirect(t, dsn)
	d.rh.refuse.Store(true)
	reg, h, rh := d.reg, d.h, d.rh
	run := func() func() { return d.run(outbox.Config{Mark: mark}) }
	insert(t, db, map[string]any{"partition_key": "c-1", "payload": []byte(`{"n":1}`)})
	pending := "SELECT count(*) FROM switchboard_outbox WHERE processed_at IS NULL"
	stop := run()
	eventually.True(t, "the send is refused and retried", 30*time.Second, func() bool {
		return metrictest.Value(t, reg, "switchboard_connector_send_errors_total", "connector", "chat") >= 3
	})
	stop()
	if n := count(t, db, pending); n != 1 {
		t.Fatalf("a row whose send was refused was finished: %d rows pending, want 1", n)
	}
	rh.refuse.Store(false)
	stop = run()
	eventually.True(t, "the row is finished", 30*time.Second, func() bool { return count(t, db, pending) == 0 })
	stop()
	if m, _ := h.CatchUp("chat", "conversation:c-1", 0, "", 10); len(m.Records) != 1 {
		t.Errorf("%d records in the history, want 1", len(m.Records))
	}
	want := map[bool]int{false: 0, true: 1}[mark]
	if n := count(t, db, "SELECT count(*) FROM switchboard_outbox"); n != want {
		t.Errorf("%d rows left in the table, want %d (processed: %v)", n, want, map[bool]string{false: "delete", true: "mark"}[mark])
	}
}

// TestOutboxTargetLaneRefusedHoldsOnlyItself: with ordering: target, the rows of a group whose
// sends are refused stay in the table (both, the later one not finished before the earlier),
// while the rows of another group in the same partition and batch are sent and deleted; once
// the group is accepted again its rows follow, in order.
func TestOutboxTargetLaneRefusedHoldsOnlyItself(t *testing.T) {
	dsn, db := outboxDB(t, 1)
	d := newDirect(t, dsn)
	d.rh.only = "conversation:stuck"
	d.rh.refuse.Store(true)
	row := func(conv string, n int) map[string]any {
		return map[string]any{"partition_key": conv, "payload": []byte(fmt.Sprintf(`{"n":%d}`, n))}
	}
	insert(t, db, row("stuck", 1), row("ok", 1), row("stuck", 2), row("ok", 2))
	stop := d.run(outbox.Config{OrderByTarget: true})
	defer func() { stop() }()
	eventually.True(t, "the other group's rows are sent and deleted", 30*time.Second, func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox WHERE partition_key = 'ok'") == 0
	})
	eventually.True(t, "the refused group's sends are retried", 30*time.Second, func() bool {
		return metrictest.Value(t, d.reg, "switchboard_connector_send_errors_total", "connector", "chat") >= 3
	})
	if n := count(t, db, "SELECT count(*) FROM switchboard_outbox WHERE partition_key = 'stuck'"); n != 2 {
		t.Fatalf("%d rows of the refused group left, want 2", n)
	}
	d.rh.refuse.Store(false)
	eventually.True(t, "the refused group's rows follow", 30*time.Second, func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0
	})
	m, err := d.h.CatchUp("chat", "conversation:stuck", 0, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Records {
		got = append(got, string(r.Data))
	}
	if fmt.Sprint(got) != `[{"n":1} {"n":2}]` {
		t.Errorf("history of the refused group %v, want n 1 then 2, once each", got)
	}
}

// TestOutboxWorkerServesItsPartitionsInOneTransaction: rows waiting in all 8 partitions are
// sent by one worker (workers: 1) in one transaction, not one per partition; each partition
// key's rows reach its group in id order, once.
func TestOutboxWorkerServesItsPartitionsInOneTransaction(t *testing.T) {
	dsn, db := outboxDB(t, 8)
	d := newDirect(t, dsn)
	const keys, per = 16, 10
	var rows []map[string]any
	for i := range per {
		for k := range keys {
			rows = append(rows, map[string]any{"partition_key": fmt.Sprintf("k%d", k), "payload": []byte(fmt.Sprintf(`{"seq":%d}`, i))})
		}
	}
	insert(t, db, rows...)
	if n := count(t, db, "SELECT count(DISTINCT partition) FROM switchboard_outbox"); n < 6 {
		t.Fatalf("the rows are in %d partitions: the test needs most of the 8", n)
	}
	stop := d.run(outbox.Config{Workers: 1, BatchSize: 1000})
	defer func() { stop() }()
	eventually.True(t, "every row is sent and deleted", 30*time.Second, func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0
	})
	stop()
	stop = func() {}
	if got := metrictest.Value(t, d.reg, "switchboard_connector_outbox_transactions_total", "connector", "chat"); got != 1 {
		t.Errorf("%v transactions finished the rows of 8 partitions, want 1", got)
	}
	if got := metrictest.Value(t, d.reg, "switchboard_connector_outbox_rows_total", "connector", "chat"); got != keys*per {
		t.Errorf("rows_total %v, want %d", got, keys*per)
	}
	for k := range keys {
		m, err := d.h.CatchUp("chat", fmt.Sprintf("conversation:k%d", k), 0, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range m.Records {
			got = append(got, string(r.Data))
		}
		var want []string
		for i := range per {
			want = append(want, fmt.Sprintf(`{"seq":%d}`, i))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("k%d: history %v, want seq 0 to %d once each in order", k, got, per-1)
		}
	}
}
