package connector

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// item is a record of a test batch: its partition, key (the group customer:{key}) and value.
type item struct {
	partition int32
	key       string
	value     string
	headers   []string
}

// placeBatch places items as records at offsets 0, 1, …
func placeBatch(t *testing.T, d *Deliverer, items []item) []Placed {
	t.Helper()
	out := make([]Placed, len(items))
	for i, it := range items {
		r := rec(it.key, it.value, it.headers...)
		r.Partition, r.Offset = it.partition, int64(i)
		s, err := d.Place(r)
		out[i] = Placed{Record: r, Send: s, Err: err}
	}
	return out
}

func (f *fixture) values(t *testing.T, group string) []string {
	t.Helper()
	var out []string
	for _, r := range f.stream(t, group) {
		out = append(out, string(r.Data))
	}
	return out
}

// A batch's runs to many groups are in flight together: far fewer fsyncs than runs, and each
// group's history holds its records once, in order.
func TestDeliverBatchSharesFsyncs(t *testing.T) {
	f := newFixtureFsync(t, history.FsyncGroupCommit)
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
	const groups, per = 16, 4
	var items []item
	for i := range per {
		for g := range groups { // every record a run of its own: the next is another group's
			items = append(items, item{partition: int32(g % 4), key: fmt.Sprint(g), value: fmt.Sprintf(`{"seq":%d}`, i)})
		}
	}
	done := d.DeliverBatch(context.Background(), placeBatch(t, d, items), OrderPartition)
	if slices.Contains(done, false) {
		t.Fatalf("done %v", done)
	}
	for g := range groups {
		if got := f.values(t, fmt.Sprintf("customer:%d", g)); fmt.Sprint(got) != `[{"seq":0} {"seq":1} {"seq":2} {"seq":3}]` {
			t.Errorf("group %d: %v", g, got)
		}
	}
	// Run after run, each waits for an fsync of its own: one append in flight at a time, 64
	// waves. Started together, all 64 are in flight at once, in one wave, and share fsyncs
	// (how many depends on how fast the disk syncs against how fast the appends come: logged,
	// not asserted).
	if most, waves := f.fh.maxInFlight.Load(), f.fh.waves.Load(); most != groups*per || waves != 1 {
		t.Errorf("%d appends in flight at most, in %d waves; want all %d in one", most, waves, groups*per)
	}
	t.Logf("%v fsyncs for %d runs", metrictest.Value(t, f.reg, "switchboard_history_fsyncs_total"), groups*per)
}

// A group whose sends are refused holds back only what must follow it: by target, its own
// later records; by partition, the later records of its partition, whatever their group.
// Everything else of the batch is done; nothing is done out of order.
func TestDeliverBatchRefusedHoldsOnlyItsLane(t *testing.T) {
	items := []item{
		{0, "stuck", `1`, nil}, // refused
		{0, "ok", `1`, nil},    // partition 0 after stuck: by partition, held
		{1, "other", `1`, nil}, // partition 1: done either way
		{0, "stuck", `2`, nil}, // held
		{0, "ok", `2`, nil},    // by target after ok 1 (done): done; by partition after stuck 2: held
		{1, "other", `2`, nil},
	}
	for _, tc := range []struct {
		name  string
		order Order
		want  []bool
	}{
		{"target", OrderTarget, []bool{false, true, true, false, true, true}},
		{"partition", OrderPartition, []bool{false, false, true, false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			stuck := "customer:stuck"
			f.fh.refuse.Store(&stuck)
			d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}"}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			done := d.DeliverBatch(ctx, placeBatch(t, d, items), tc.order)
			if fmt.Sprint(done) != fmt.Sprint(tc.want) {
				t.Errorf("done %v, want %v", done, tc.want)
			}
			if got := f.values(t, "customer:stuck"); len(got) != 0 {
				t.Errorf("refused group's history %v", got)
			}
			if got := f.values(t, "customer:other"); fmt.Sprint(got) != "[1 2]" {
				t.Errorf("other's history %v, want [1 2]", got)
			}
			// Once accepted again, the records not done follow, each group's in order and
			// once (a record sent but held back is answered from the idempotency index).
			f.fh.refuse.Store(nil)
			placed := placeBatch(t, d, items)
			var again []Placed
			for i, ok := range done {
				if !ok {
					again = append(again, placed[i])
				}
			}
			if done := d.DeliverBatch(context.Background(), again, tc.order); slices.Contains(done, false) {
				t.Fatalf("after the refusals: done %v", done)
			}
			for g, want := range map[string]string{"stuck": "[1 2]", "ok": "[1 2]", "other": "[1 2]"} {
				if got := f.values(t, "customer:"+g); fmt.Sprint(got) != want {
					t.Errorf("%s's history %v, want %s", g, got, want)
				}
			}
		})
	}
}

// A poison record in a batch is set aside in its place and the records behind it are sent;
// records sharing an idempotency key (a header) in one batch do not wait for each other for
// ever: the second is answered from the index.
func TestDeliverBatchPoisonAndSharedKeys(t *testing.T) {
	f := newFixture(t)
	var dead []int64
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}", ContentType: "application/json"}, func(_ context.Context, r *Record, p *Poison) error {
		dead = append(dead, r.Offset)
		return nil
	})
	items := []item{
		{0, "a", `1`, nil},
		{0, "a", `{not json`, nil}, // poison
		{0, "a", `2`, []string{"switchboard-idempotency-key", "event-7"}},
		{0, "b", `1`, nil},
		{0, "a", `2`, []string{"switchboard-idempotency-key", "event-7"}}, // the same send again
		{0, "a", `3`, nil},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := d.DeliverBatch(ctx, placeBatch(t, d, items), OrderPartition)
	if slices.Contains(done, false) {
		t.Fatalf("done %v (a shared key waited for itself until the deadline?)", done)
	}
	if fmt.Sprint(dead) != "[1]" {
		t.Errorf("dead letters %v, want the record at offset 1", dead)
	}
	if got := f.values(t, "customer:a"); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("a's history %v, want [1 2 3]", got)
	}
	if got := metrictest.Value(t, f.reg, "switchboard_connector_records_total", "connector", "accounts", "result", "replayed"); got != 1 {
		t.Errorf("replayed = %v, want 1", got)
	}
}

// Poison records are set aside together once nothing they follow is left, not one per pass:
// with poison records in every partition a batch takes a pass per poison record of a
// partition, not per poison record of the batch (each pass that sends waits for an fsync of
// its own). Every group's records arrive once, in order; every poison record is set aside
// once, after what it follows.
func TestDeliverBatchSetsAsidePoisonOfAllPartitionsTogether(t *testing.T) {
	f := newFixtureFsync(t, history.FsyncGroupCommit)
	type dead struct {
		partition int32
		offset    int64
	}
	var deads []dead
	d := f.deliverer(t, Config{Hub: "accounts", Group: "customer:{key}", ContentType: "application/json"}, func(_ context.Context, r *Record, _ *Poison) error {
		deads = append(deads, dead{r.Partition, r.Offset})
		return nil
	})
	const partitions = 8
	lane := []string{`1`, `{not json`, `2`, `{not json`, `3`} // by partition: 1, poison, 2, poison, 3
	var items []item
	for _, v := range lane {
		for p := range partitions {
			items = append(items, item{partition: int32(p), key: fmt.Sprint(p), value: v})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if done := d.DeliverBatch(ctx, placeBatch(t, d, items), OrderPartition); slices.Contains(done, false) {
		t.Fatalf("done %v", done)
	}
	for p := range partitions {
		if got := f.values(t, fmt.Sprintf("customer:%d", p)); fmt.Sprint(got) != "[1 2 3]" {
			t.Errorf("group %d: %v, want [1 2 3]", p, got)
		}
	}
	last := map[int32]int64{}
	for _, x := range deads {
		if prev, ok := last[x.partition]; ok && x.offset <= prev {
			t.Errorf("partition %d: poison at offset %d set aside after %d", x.partition, x.offset, prev)
		}
		last[x.partition] = x.offset
	}
	if len(deads) != 2*partitions {
		t.Errorf("%d dead letters, want %d: %v", len(deads), 2*partitions, deads)
	}
	// Three passes send (the 1s, the 2s, the 3s): three waves of appends, each waiting for the
	// history's fsyncs. One poison record set aside per pass takes a pass per poison record
	// after the first, each sending: 17 waves or more (21 fsyncs measured).
	if waves := f.fh.waves.Load(); waves != 3 {
		t.Errorf("%d waves of appends, want 3: poison records were set aside one per pass", waves)
	}
	t.Logf("%d waves, %v fsyncs, %d dead letters", f.fh.waves.Load(), metrictest.Value(t, f.reg, "switchboard_history_fsyncs_total"), len(deads))
}

// BenchmarkDeliverBatchPoison is an outbox worker's batch at the defaults (16 partitions of
// 500 rows) in which one row in ten is poison (not JSON), sent to users (no history, no
// members: what is measured is the batch's bookkeeping, the sends and the set-asides, without a
// dead-letter destination). Report: ns per row.
func BenchmarkDeliverBatchPoison(b *testing.B) {
	f := newFixture(b)
	d := f.deliverer(b, Config{Hub: "accounts", User: "{key}", ContentType: "application/json"}, nil)
	const partitions, perPartition = 16, 500
	recs := make([]Record, partitions*perPartition)
	placed := make([]Placed, len(recs))
	var off int64
	b.ReportAllocs()
	for b.Loop() {
		for i := range recs {
			p := int32(i % partitions)
			value := []byte(`{"n":1}`)
			if i/partitions%10 == 9 {
				value = []byte(`{not json`)
			}
			recs[i] = Record{Topic: "bench-outbox", Partition: p, Offset: off, Key: []byte(fmt.Sprint(i % 64)), Value: value}
			off++
			s, err := d.Place(&recs[i])
			placed[i] = Placed{Record: &recs[i], Send: s, Err: err}
		}
		if done := d.DeliverBatch(context.Background(), placed, OrderPartition); slices.Contains(done, false) {
			b.Fatal("a row not done")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/row")
	b.ReportMetric(0, "ns/op")
}
