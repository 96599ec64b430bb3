package kafka_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/connector/kafka"
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

// committed returns the group's committed offset of topic's partition 0, -1 when none.
func committed(t *testing.T, brokers, group, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			return p.Offset
		}
	}
	return -1
}

// A record whose send is refused (history unavailable) is not committed: a connector stopped
// meanwhile leaves it uncommitted, and the next one sends it, once, and commits it.
func TestKafkaCommitsOnlyAcceptedSends(t *testing.T) {
	for _, byTarget := range []bool{false, true} {
		t.Run(fmt.Sprintf("order_by_target=%v", byTarget), func(t *testing.T) { testCommitsOnlyAcceptedSends(t, byTarget) })
	}
}

func testCommitsOnlyAcceptedSends(t *testing.T, byTarget bool) {
	brokers := startKafka(t, 1, "account-updates")
	reg := prometheus.NewRegistry()
	h, err := hist.New(hist.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: hist.FsyncNone, Registerer: reg,
		Policies: hist.Policies{"accounts": {{Pattern: "customer:*", Retention: hist.Retention{MaxMessages: 100, MaxAge: time.Hour}}}}})
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
	km, _ := kafka.NewMetrics(reg)
	mapping, err := connector.NewMapping(connector.Config{Hub: "accounts", Group: "customer:{key}"})
	if err != nil {
		t.Fatal(err)
	}
	run := func() (stop func()) {
		c, err := kafka.New(kafka.Config{Name: "accounts", Brokers: []string{brokers}, Topics: []string{"account-updates"},
			ConsumerGroup: "sb", StartEarliest: true, SessionTimeout: 2 * time.Second, CommitInterval: 100 * time.Millisecond,
			StopGrace: 50 * time.Millisecond, Metrics: km, OrderByTarget: byTarget},
			func(dead connector.DeadLetter) (*connector.Deliverer, error) {
				return connector.NewDeliverer(connector.DeliverConfig{Name: "accounts", Mapping: mapping, Node: node,
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
	produce(t, producer(t, brokers), record("account-updates", 0, "c-1", `{"n":1}`))
	stop := run()
	eventually.True(t, "the send is refused and retried", 30*time.Second, func() bool {
		return metrictest.Value(t, reg, "switchboard_connector_send_errors_total", "connector", "accounts") >= 3
	})
	stop()
	if off := committed(t, brokers, "sb", "account-updates"); off != -1 {
		t.Fatalf("a record whose send was refused was committed: offset %d", off)
	}
	rh.refuse.Store(false)
	stop = run()
	eventually.True(t, "the record reaches the history", 30*time.Second, func() bool {
		m, err := h.CatchUp("accounts", "customer:c-1", 0, "", 10)
		return err == nil && len(m.Records) > 0
	})
	stop()
	if off := committed(t, brokers, "sb", "account-updates"); off != 1 {
		t.Errorf("committed offset %d after the send was accepted, want 1", off)
	}
	if m, _ := h.CatchUp("accounts", "customer:c-1", 0, "", 10); len(m.Records) != 1 {
		t.Errorf("%d records in the history, want 1", len(m.Records))
	}
}
