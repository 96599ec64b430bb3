package outbox_test

import (
	"context"
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

// refusingHistory refuses appends while refuse is set, as a full disk does.
type refusingHistory struct {
	*hist.Service
	refuse atomic.Bool
}

func (r *refusingHistory) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	if r.refuse.Load() {
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

func testDeletesOnlyAcceptedSends(t *testing.T, mark bool) {
	dsn, db := outboxDB(t, 2)
	reg := prometheus.NewRegistry()
	h, err := hist.New(hist.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: hist.FsyncNone, Registerer: reg,
		Policies: hist.Policies{"chat": {{Pattern: "conversation:*", Retention: hist.Retention{MaxMessages: 100, MaxAge: time.Hour}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rh := &refusingHistory{Service: h}
	rh.refuse.Store(true)
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
	run := func() (stop func()) {
		c, err := outbox.New(outbox.Config{Name: "chat", DSN: dsn, Table: "switchboard_outbox", Mark: mark,
			PollInterval: 50 * time.Millisecond, MaxTx: 200 * time.Millisecond, StopGrace: 50 * time.Millisecond, Metrics: om},
			func(dead connector.DeadLetter) (*connector.Deliverer, error) {
				return connector.NewDeliverer(connector.DeliverConfig{Name: "chat", Mapping: mapping, Node: node,
					Sends: durable.Sender{Keys: h.Idempotency(), Replays: h}, Metrics: shared,
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
