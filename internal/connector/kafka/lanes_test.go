package kafka_test

import (
	"context"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/connector/kafka"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	hist "github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// laneOf is the lane of a group of hub accounts (the worker's FNV-1a of the target key).
func laneOf(group string) uint32 {
	h := fnv.New32a()
	h.Write([]byte("accounts\x00group\x00" + group))
	return h.Sum32() % 32
}

// With ordering: target, two groups that share a lane and whose records alternate in one
// partition are still sent in runs (each group's pending records together): far fewer fsyncs
// than records, and each group's records in order. When a lane's run took only consecutive
// records, every run was one record long and each record had an fsync of its own.
func TestKafkaLaneRunsGatherTheirTarget(t *testing.T) {
	a := "customer:a"
	b := ""
	for i := 0; b == ""; i++ {
		if g := fmt.Sprintf("customer:b%d", i); laneOf(g) == laneOf(a) {
			b = g
		}
	}
	brokers := startKafka(t, 1, "account-updates")
	reg := prometheus.NewRegistry()
	h, err := hist.New(hist.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: hist.FsyncGroupCommit, Registerer: reg,
		Policies: hist.Policies{"accounts": {{Pattern: "customer:*", Retention: hist.Retention{MaxMessages: 1000, MaxAge: time.Hour}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	node, err := core.NewNode(core.Config{History: h, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := connector.NewMetrics(reg)
	km, _ := kafka.NewMetrics(reg)
	mapping, err := connector.NewMapping(connector.Config{Hub: "accounts", Group: "{key}"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 256
	var recs []*kgo.Record
	for i := range n {
		key := a
		if i%2 == 1 {
			key = b
		}
		recs = append(recs, record("account-updates", 0, key, fmt.Sprintf(`{"seq":%d}`, i)))
	}
	produce(t, producer(t, brokers), recs...) // before the connector starts: one fetch brings them all
	c, err := kafka.New(kafka.Config{Name: "accounts", Brokers: []string{brokers}, Topics: []string{"account-updates"},
		ConsumerGroup: "sb", StartEarliest: true, SessionTimeout: 2 * time.Second, OrderByTarget: true, Metrics: km},
		func(dead connector.DeadLetter) (*connector.Deliverer, error) {
			return connector.NewDeliverer(connector.DeliverConfig{Name: "accounts", Mapping: mapping, Node: node,
				Sends: durable.Sender{Keys: h.Idempotency(), Replays: h}, Metrics: shared})
		})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	count := func(group string) []hist.Record {
		m, err := h.CatchUp("accounts", group, 0, "", 1000)
		if err != nil {
			return nil
		}
		return m.Records
	}
	eventually.True(t, "every record is in the history", 30*time.Second, func() bool { return len(count(a))+len(count(b)) == n })
	for _, g := range []string{a, b} {
		prev := -1
		for _, r := range count(g) {
			var seq int
			fmt.Sscanf(string(r.Data), `{"seq":%d}`, &seq)
			if seq <= prev {
				t.Fatalf("%s out of order: %d after %d", g, seq, prev)
			}
			prev = seq
		}
	}
	fsyncs := metrictest.Value(t, reg, "switchboard_history_fsyncs_total")
	t.Logf("%v fsyncs for %d records", fsyncs, n)
	if fsyncs > n/4 {
		t.Errorf("%v fsyncs for %d records of two groups sharing a lane: runs were not gathered", fsyncs, n)
	}
}
