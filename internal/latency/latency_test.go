package latency_test

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/switchboardhq/switchboard/internal/latency"
)

func gather(t *testing.T, h *latency.Histogram) map[string]*dto.Histogram {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(h)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Histogram{}
	for _, f := range fams {
		if f.GetName() != "switchboard_delivery_latency_seconds" {
			t.Errorf("unexpected family %q", f.GetName())
		}
		for _, m := range f.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetHistogram()
		}
	}
	return out
}

// cumulative returns the histogram's cumulative count at upper bound le.
func cumulative(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%v", le)
	return 0
}

func TestShardsSumIntoBuckets(t *testing.T) {
	h := latency.New()
	a, b := h.Shard("websocket"), h.Shard("websocket")
	other := h.Shard("sse")
	now := time.Unix(1000, 0)
	acc := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	a.Observe(acc(50*time.Microsecond), now)  // le 0.0001
	a.Observe(acc(100*time.Microsecond), now) // le 0.0001 (bounds are inclusive)
	b.Observe(acc(3*time.Millisecond), now)   // le 0.005
	b.Observe(acc(20*time.Second), now)       // above 10 s: +Inf only
	a.Observe(0, now)                         // not a send: ignored
	a.Observe(acc(-time.Second), now)         // accepted after now (clock step): ignored
	other.Observe(acc(time.Second), now)

	got := gather(t, h)
	ws := got["websocket"]
	if ws == nil || got["sse"] == nil {
		t.Fatalf("series = %v, want websocket and sse", got)
	}
	if ws.GetSampleCount() != 4 {
		t.Errorf("count = %d, want 4", ws.GetSampleCount())
	}
	wantSum := (50*time.Microsecond + 100*time.Microsecond + 3*time.Millisecond + 20*time.Second).Seconds()
	if math.Abs(ws.GetSampleSum()-wantSum) > 1e-9 {
		t.Errorf("sum = %v, want %v", ws.GetSampleSum(), wantSum)
	}
	for _, c := range []struct {
		le   float64
		want uint64
	}{{0.0001, 2}, {0.001, 2}, {0.0025, 2}, {0.005, 3}, {10, 3}} {
		if n := cumulative(t, ws, c.le); n != c.want {
			t.Errorf("le %v: %d, want %d", c.le, n, c.want)
		}
	}
	if len(ws.GetBucket()) != len(latency.Buckets) || latency.Buckets[0] != 0.0001 || latency.Buckets[len(latency.Buckets)-1] != 10 {
		t.Errorf("buckets %v, want 100 µs to 10 s", latency.Buckets)
	}
	if s := got["sse"]; s.GetSampleCount() != 1 || cumulative(t, s, 1) != 1 || cumulative(t, s, 0.5) != 0 {
		t.Errorf("sse = %v, want one observation in le 1", s)
	}
}

// Observing allocates nothing: it runs once per socket write.
func TestObserveAllocatesNothing(t *testing.T) {
	s := latency.New().Shard("websocket")
	now := time.Now()
	acc := now.Add(-time.Millisecond).UnixNano()
	if n := testing.AllocsPerRun(1000, func() { s.Observe(acc, now) }); n != 0 {
		t.Errorf("Observe allocates %v times, want 0", n)
	}
}

// Shared gives one shard per transport, however many times it is asked
// (for short-lived writers), counted with the transport's other shards.
func TestSharedShard(t *testing.T) {
	h := latency.New()
	a, b := h.Shared("sse"), h.Shared("sse")
	if a != b {
		t.Fatal("Shared returned two shards for one transport")
	}
	now := time.Now()
	a.Observe(now.Add(-time.Millisecond).UnixNano(), now)
	h.Shard("sse").Observe(now.Add(-time.Millisecond).UnixNano(), now)
	if n := gather(t, h)["sse"].GetSampleCount(); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
}
