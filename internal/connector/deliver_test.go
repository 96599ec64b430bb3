package connector

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// flakyHistory refuses the first fail appends as a full disk would, and every append to
// group refuse, when set. It counts the appends in flight (appended, not yet waited for as
// durable): the most at once, and the waves — how often appends began with none in flight.
type flakyHistory struct {
	*history.Service
	fail   atomic.Int32
	refuse atomic.Pointer[string]

	inFlight, maxInFlight, waves atomic.Int32
}

func (f *flakyHistory) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	if g := f.refuse.Load(); g != nil && *g == group {
		return nil, core.ErrHistoryUnavailable
	}
	if f.fail.Add(-1) >= 0 {
		return nil, core.ErrHistoryUnavailable
	}
	wait, err := f.Service.Append(ctx, hub, group, m)
	if err != nil {
		return wait, err
	}
	n := f.inFlight.Add(1)
	if n == 1 {
		f.waves.Add(1)
	}
	for most := f.maxInFlight.Load(); n > most && !f.maxInFlight.CompareAndSwap(most, n); most = f.maxInFlight.Load() {
	}
	return func() error {
		defer f.inFlight.Add(-1)
		return wait()
	}, nil
}

type fixture struct {
	hist *history.Service
	fh   *flakyHistory
	node *core.Node
	reg  *prometheus.Registry
	m    *Metrics
}

func newFixture(t testing.TB) *fixture { return newFixtureFsync(t, history.FsyncNone) }

func newFixtureFsync(t testing.TB, fsync history.FsyncPolicy) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	hist, err := history.New(history.Config{Dir: filepath.Join(t.TempDir(), "history"), Fsync: fsync,
		Policies:   history.Policies{"accounts": {{Pattern: "customer:*", Retention: history.Retention{MaxMessages: 1000, MaxAge: time.Hour}}}},
		Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hist.Close() })
	fh := &flakyHistory{Service: hist}
	node, err := core.NewNode(core.Config{History: fh, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{hist: hist, fh: fh, node: node, reg: reg, m: m}
}

func (f *fixture) deliverer(t testing.TB, c Config, dl DeadLetter) *Deliverer {
	t.Helper()
	d, err := NewDeliverer(DeliverConfig{Name: "accounts", Mapping: mustMapping(t, c), Node: f.node,
		Sends: durable.Sender{Keys: f.hist.Idempotency(), Replays: f.hist}, DeadLetter: dl, Metrics: f.m,
		Backoff: Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) stream(t *testing.T, group string) []history.Record {
	t.Helper()
	msgs, err := f.hist.CatchUp("accounts", group, 0, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return msgs.Records
}

// A record delivered twice (a redelivery after a crash) is in the history once: the second
// send is answered from the idempotency index, as a REST retry with the same key is.
func TestDeliverRedeliveryIsInHistoryOnce(t *testing.T) {
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	r := rec("c-17", `{"n":1}`)
	for range 2 {
		if err := d.Deliver(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	recs := f.stream(t, "customer:c-17")
	if len(recs) != 1 || recs[0].Key != "account-updates/3/42" || string(recs[0].Data) != `{"n":1}` {
		t.Fatalf("history %+v", recs)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_records_total", "connector", "accounts", "result", "replayed"); got != 1 {
		t.Errorf("replayed = %v", got)
	}
}

// A send refused because the history is unavailable is retried until accepted; Deliver does
// not return before (the source commits only after it returns).
func TestDeliverRetriesRefusedSend(t *testing.T) {
	f := newFixture(t)
	f.fh.fail.Store(3)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	if err := d.Deliver(context.Background(), rec("c-1", `1`)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.stream(t, "customer:c-1")); n != 1 {
		t.Fatalf("%d records in history", n)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_send_errors_total", "connector", "accounts"); got != 3 {
		t.Errorf("send errors = %v, want 3", got)
	}
	// Stopped while refused: Deliver returns the context's error, so the record is not committed.
	f.fh.fail.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := rec("c-2", `2`)
	r.Offset++
	if err := d.Deliver(ctx, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver while refused returned %v", err)
	}
}

// A poison record goes to the dead-letter destination and Deliver returns nil (it is
// skipped); a dead-letter destination that keeps failing does not hold it for ever.
func TestDeliverPoisonGoesToDeadLetter(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var dead []*Poison
	fails := 0
	d := f.deliverer(t, Config{Hub: "accounts", Group: "account:{value.customerId}"}, func(_ context.Context, r *Record, p *Poison) error {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			return errors.New("broker down")
		}
		dead = append(dead, p)
		return nil
	})
	if err := d.Deliver(context.Background(), rec("c", `{"other":1}`)); err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Reason != ReasonTemplate {
		t.Fatalf("dead letters %+v", dead)
	}
	fails = 2
	if err := d.Deliver(context.Background(), rec("c", `not json`)); err != nil || len(dead) != 2 {
		t.Fatalf("after two dead-letter failures: %v, %d dead letters", err, len(dead))
	}
	fails = 1 << 30
	if err := d.Deliver(context.Background(), rec("c", `[]`)); err != nil {
		t.Fatalf("dead letter gone for good: %v", err)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_dead_letters_total", "connector", "accounts", "result", "failed"); got != 1 {
		t.Errorf("failed dead letters = %v", got)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_poison_records_total", "connector", "accounts", "reason", ReasonTemplate); got != 3 {
		t.Errorf("poison(template) = %v", got)
	}
}

// A key reused for another record (a recreated topic within the idempotency window) is a
// poison record, not a send retried for ever.
func TestDeliverKeyReusedIsPoison(t *testing.T) {
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	if err := d.Deliver(context.Background(), rec("c-1", `1`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), rec("c-1", `2`)); err != nil {
		t.Fatal(err)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_poison_records_total", "connector", "accounts", "reason", ReasonRefused); got != 1 {
		t.Errorf("poison(refused) = %v", got)
	}
}

// placedRun places n records (offsets from, key c-1: one target) for DeliverRun.
func placedRun(t *testing.T, d *Deliverer, from, n int) []Placed {
	t.Helper()
	var out []Placed
	for i := range n {
		r := rec("c-1", fmt.Sprintf(`{"seq":%d}`, from+i))
		r.Offset = int64(from + i)
		s, err := d.Place(r)
		out = append(out, Placed{Record: r, Send: s, Err: err})
	}
	return out
}

// A run of records to one history group is in flight at once: far fewer fsyncs than records,
// and the history holds them once, in order.
func TestDeliverRunSharesFsyncs(t *testing.T) {
	f := newFixtureFsync(t, history.FsyncGroupCommit)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	run := placedRun(t, d, 0, MaxRun)
	if n := RunLength(run); n != MaxRun {
		t.Fatalf("RunLength %d, want %d", n, MaxRun)
	}
	done, err := d.DeliverRun(context.Background(), run)
	if err != nil || done != MaxRun {
		t.Fatalf("DeliverRun: %d, %v", done, err)
	}
	recs := f.stream(t, "customer:c-1")
	for i, r := range recs {
		if string(r.Data) != fmt.Sprintf(`{"seq":%d}`, i) {
			t.Fatalf("history record %d is %s", i, r.Data)
		}
	}
	if len(recs) != MaxRun {
		t.Fatalf("%d records in the history, want %d", len(recs), MaxRun)
	}
	// One at a time, each send waits for its own fsync: MaxRun of them. In
	// flight together they share them (1–4 on a quiet machine); a starved
	// appender lets the committer sync smaller batches (27 seen under a load
	// average of 4 at nice 19), so the bound is half a run, far from MaxRun.
	fsyncs := metrictest.Value(t, f.reg, "switchboard_history_fsyncs_total")
	if fsyncs > MaxRun/2 {
		t.Errorf("%v fsyncs for a run of %d records: the sends were not in flight together", fsyncs, MaxRun)
	}
	t.Logf("%v fsyncs for %d records", fsyncs, MaxRun)
}

// A run whose sends start being refused part way returns the records done before the refusal;
// the rest are delivered by the next calls, with retries, once each and in order.
func TestDeliverRunRefusedPartWay(t *testing.T) {
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	if done, err := d.DeliverRun(context.Background(), placedRun(t, d, 0, 2)); err != nil || done != 2 {
		t.Fatalf("first run: %d, %v", done, err)
	}
	f.fh.fail.Store(3) // the next three appends are refused
	run := placedRun(t, d, 2, 5)
	var calls []int
	for i := 0; i < len(run); {
		done, err := d.DeliverRun(context.Background(), run[i:])
		if err != nil || done == 0 {
			t.Fatalf("DeliverRun: %d, %v", done, err)
		}
		calls = append(calls, done)
		i += done
	}
	if calls[0] != 1 || len(calls) < 2 {
		t.Errorf("runs done %v: the first should be delivered alone after the refusals", calls)
	}
	recs := f.stream(t, "customer:c-1")
	if len(recs) != 7 {
		t.Fatalf("%d records in the history, want 7", len(recs))
	}
	for i, r := range recs {
		if string(r.Data) != fmt.Sprintf(`{"seq":%d}`, i) {
			t.Fatalf("history record %d is %s", i, r.Data)
		}
	}
}

// A record whose key another record may carry (a header, or a template without the record's
// place) is not in flight with others: two runs could each wait for a key the other holds.
func TestRunLengthOnlyBatchesOwnKeys(t *testing.T) {
	f := newFixture(t)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	run := placedRun(t, d, 0, 4)
	r := rec("c-1", `{}`, "switchboard-idempotency-key", "event-7")
	s, err := d.Place(r)
	run = append(run[:2], append([]Placed{{Record: r, Send: s, Err: err}}, run[2:]...)...)
	if n := RunLength(run); n != 2 {
		t.Errorf("RunLength %d, want 2 (up to the record keyed by its header)", n)
	}
	if n := RunLength(run[2:]); n != 3 {
		t.Errorf("RunLength from the header-keyed record %d, want 3 (it may lead a run)", n)
	}
	byValue := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}", IdempotencyKey: "{value.eventId}"}, nil)
	var placed []Placed
	for i := range 3 {
		r := rec("c-1", fmt.Sprintf(`{"eventId":"e%d"}`, i))
		s, err := byValue.Place(r)
		placed = append(placed, Placed{Record: r, Send: s, Err: err})
	}
	if n := RunLength(placed); n != 1 {
		t.Errorf("RunLength %d with keys from the value, want 1", n)
	}
}

// BenchmarkDeliverRun is a connector's work per record once it has the record, without the
// source: placed, started in a run of 16 to one history group (appended, its key claimed) and
// finished (durable with fsync none, broadcast to the group, which has no members here), as a
// Kafka lane does. Report: ns and allocations per record.
func BenchmarkDeliverRun(b *testing.B) {
	f := newFixture(b)
	d := f.deliverer(b, Config{Hub: "accounts", Group: "customer:{key}", ContentType: "text/plain"}, nil)
	const runLen, groups = 16, 64
	keys := make([][]byte, groups)
	for i := range keys {
		keys[i] = []byte(fmt.Sprint(i))
	}
	value := make([]byte, 64)
	placed := make([]Placed, runLen)
	recs := make([]Record, runLen)
	var off int64
	b.ReportAllocs()
	for b.Loop() {
		key := keys[off/runLen%groups]
		for i := range recs {
			recs[i] = Record{Topic: "bench-connector", Partition: 3, Offset: off, Key: key, Value: value}
			off++
			s, err := d.Place(&recs[i])
			placed[i] = Placed{Record: &recs[i], Send: s, Err: err}
		}
		started := d.StartRun(context.Background(), placed)
		if n := d.FinishRun(started); n != runLen {
			b.Fatalf("%d of %d done", n, runLen)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*runLen), "ns/record")
	b.ReportMetric(0, "ns/op")
}
