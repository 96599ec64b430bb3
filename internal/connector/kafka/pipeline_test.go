package kafka_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/connector/kafka"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	hist "github.com/switchboardhq/switchboard/internal/history"
)

// gatedHistory holds the durability of what is appended while its gate is shut (as a slow
// fsync does), records what it appended, and refuses the appends of one payload while told to
// (as a full disk does: nothing of it reaches the log).
type gatedHistory struct {
	*hist.Service
	mu       sync.Mutex
	gate     chan struct{} // nil: open
	appended []string
	refuse   string
	refused  int
}

func (g *gatedHistory) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	g.mu.Lock()
	if g.refuse != "" && string(m.Data) == g.refuse {
		g.refused++
		g.mu.Unlock()
		return nil, core.ErrHistoryUnavailable
	}
	gate := g.gate
	wait, err := g.Service.Append(ctx, hub, group, m)
	if err == nil {
		g.appended = append(g.appended, string(m.Data))
	}
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return func() error {
		if gate != nil {
			<-gate
		}
		return wait()
	}, nil
}

func (g *gatedHistory) shut() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedHistory) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gatedHistory) refuseData(d string) {
	g.mu.Lock()
	g.refuse = d
	g.mu.Unlock()
}

func (g *gatedHistory) state() (appended []string, refused int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.appended), g.refused
}

// With ordering: target, a lane starts the next run's sends while the previous run waits for
// its durability, and still marks records for commit only once they and every record before
// them are durable, in order; a run whose start is refused holds the lane's later runs until it
// went through, so that a target's records stay in order in its history.
//
// Without the pipeline, the second record is not appended while the first one's durability is
// held (the lane waits for the whole run before it starts the next): the first check fails.
// Without the hold after a refused start, the sixth record is appended before the fifth's
// retry: the history's order check fails (… 6, 5).
func TestKafkaLanePipelinesRunsInOrder(t *testing.T) {
	brokers := startKafka(t, 1, "account-updates")
	reg := prometheus.NewRegistry()
	h, err := hist.New(hist.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: hist.FsyncNone, Registerer: reg,
		Policies: hist.Policies{"accounts": {{Pattern: "customer:*", Retention: hist.Retention{MaxMessages: 100, MaxAge: time.Hour}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	g := &gatedHistory{Service: h}
	node, err := core.NewNode(core.Config{History: g, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	shared, _ := connector.NewMetrics(reg)
	km, _ := kafka.NewMetrics(reg)
	mapping, err := connector.NewMapping(connector.Config{Hub: "accounts", Group: "customer:{key}"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kafka.New(kafka.Config{Name: "accounts", Brokers: []string{brokers}, Topics: []string{"account-updates"},
		ConsumerGroup: "sb", StartEarliest: true, SessionTimeout: 2 * time.Second, CommitInterval: 100 * time.Millisecond,
		FetchMaxWait: 20 * time.Millisecond, Metrics: km, OrderByTarget: true},
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
	defer func() { g.open(); cancel(); <-done }() // a failed check leaves no send held
	pr := producer(t, brokers)
	rec := func(n int) string { return fmt.Sprintf(`{"n":%d}`, n) }
	appended := func(n int) bool {
		a, _ := g.state()
		return slices.Contains(a, rec(n))
	}

	// 1 and 2: the second is appended while the first waits for its durability.
	g.shut()
	produce(t, pr, record("account-updates", 0, "a", rec(1)))
	eventually.True(t, "the first record is appended", 30*time.Second, func() bool { return appended(1) })
	produce(t, pr, record("account-updates", 0, "a", rec(2)))
	eventually.True(t, "the second record is appended while the first one's durability is held", 10*time.Second,
		func() bool { return appended(2) })
	time.Sleep(300 * time.Millisecond) // three commit intervals
	if off := committed(t, brokers, "sb", "account-updates"); off != -1 {
		t.Fatalf("offset %d committed before any record was durable", off)
	}
	g.open()
	eventually.True(t, "both are committed", 30*time.Second, func() bool { return committed(t, brokers, "sb", "account-updates") == 2 })

	// 3 and 4 in flight; 5 refused at its start; 6 arrives meanwhile and must wait for 5.
	g.shut()
	produce(t, pr, record("account-updates", 0, "a", rec(3)))
	eventually.True(t, "the third record is appended", 30*time.Second, func() bool { return appended(3) })
	produce(t, pr, record("account-updates", 0, "a", rec(4)))
	eventually.True(t, "the fourth record is appended", 30*time.Second, func() bool { return appended(4) })
	g.refuseData(rec(5))
	produce(t, pr, record("account-updates", 0, "a", rec(5)))
	eventually.True(t, "the fifth record is refused", 30*time.Second, func() bool { _, r := g.state(); return r >= 1 })
	produce(t, pr, record("account-updates", 0, "a", rec(6)))
	time.Sleep(100 * time.Millisecond) // the sixth record reaches the lane (it must not be appended)
	g.open()
	eventually.True(t, "the fifth record is retried", 30*time.Second, func() bool { _, r := g.state(); return r >= 3 })
	g.refuseData("")
	eventually.True(t, "every record is committed", 30*time.Second, func() bool { return committed(t, brokers, "sb", "account-updates") == 6 })
	m, err := h.CatchUp("accounts", "customer:a", 0, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Records {
		got = append(got, string(r.Data))
	}
	want := []string{rec(1), rec(2), rec(3), rec(4), rec(5), rec(6)}
	if !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
}
