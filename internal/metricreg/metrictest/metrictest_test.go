package metrictest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeT records the first failure and stops the goroutine like t.Fatal.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls read with a fakeT on its own goroutine, as Fatalf ends it.
func run(read func(testing.TB) float64) (v float64, failed string) {
	ft := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		v = read(ft)
	}()
	<-done
	return v, ft.failed
}

func testRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	plain := prometheus.NewCounter(prometheus.CounterOpts{Name: "plain_total"})
	plain.Add(3)
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "open"})
	gauge.Set(2.5)
	zero := prometheus.NewGauge(prometheus.GaugeOpts{Name: "idle"})
	reasons := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "closes_total"}, []string{"reason"})
	reasons.WithLabelValues("a").Add(1)
	reasons.WithLabelValues("b").Add(2)
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total"}, []string{"kind", "status"})
	requests.WithLabelValues("poll", "200").Add(4)
	requests.WithLabelValues("poll", "404").Add(1)
	requests.WithLabelValues("send", "200").Add(7)
	unused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "unused_total"}, []string{"reason"})
	untyped := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "untyped"}, func() float64 { return 6 })
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "duration_seconds"})
	hist.Observe(1)
	reg.MustRegister(plain, gauge, zero, reasons, requests, unused, untyped, hist)
	return reg
}

func TestValue(t *testing.T) {
	reg := testRegistry(t)
	tests := []struct {
		name    string
		metric  string
		labels  []string
		want    float64
		absent  bool   // no series matches: Value gives 0, Present fails
		failure string // both fail with this in the message
	}{
		{name: "counter", metric: "plain_total", want: 3},
		{name: "gauge", metric: "open", want: 2.5},
		{name: "gauge at zero exists", metric: "idle", want: 0},
		{name: "untyped", metric: "untyped", want: 6},
		{name: "one label", metric: "closes_total", labels: []string{"reason", "b"}, want: 2},
		{name: "no labels sums the family", metric: "closes_total", want: 3},
		{name: "all labels", metric: "requests_total", labels: []string{"kind", "poll", "status", "404"}, want: 1},
		{name: "labels in any order", metric: "requests_total", labels: []string{"status", "404", "kind", "poll"}, want: 1},
		{name: "some labels sum the matches", metric: "requests_total", labels: []string{"kind", "poll"}, want: 5},
		{name: "other label sums the matches", metric: "requests_total", labels: []string{"status", "200"}, want: 11},
		{name: "unknown label value", metric: "closes_total", labels: []string{"reason", "c"}, absent: true},
		{name: "unknown label name", metric: "closes_total", labels: []string{"cause", "a"}, absent: true},
		{name: "one pair unmatched", metric: "requests_total", labels: []string{"kind", "send", "status", "404"}, absent: true},
		{name: "unused vector", metric: "unused_total", labels: []string{"reason", "a"}, absent: true},
		{name: "unknown family", metric: "nope_total", absent: true},
		{name: "odd labels", metric: "closes_total", labels: []string{"reason"}, failure: "not name/value pairs"},
		{name: "histogram", metric: "duration_seconds", failure: "not a counter or gauge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, failed := run(func(tb testing.TB) float64 { return Value(tb, reg, tt.metric, tt.labels...) })
			switch {
			case tt.failure != "":
				if !strings.Contains(failed, tt.failure) {
					t.Fatalf("Value failed with %q, want %q", failed, tt.failure)
				}
				return
			case failed != "":
				t.Fatalf("Value failed: %s", failed)
			case v != tt.want:
				t.Fatalf("Value = %v, want %v", v, tt.want)
			}
			v, failed = run(func(tb testing.TB) float64 { return Present(tb, reg, tt.metric, tt.labels...) })
			switch {
			case tt.absent && !strings.Contains(failed, "no series of "+tt.metric):
				t.Fatalf("Present of an absent series failed with %q, want no series", failed)
			case !tt.absent && failed != "":
				t.Fatalf("Present failed: %s", failed)
			case !tt.absent && v != tt.want:
				t.Fatalf("Present = %v, want %v", v, tt.want)
			}
		})
	}
}

func TestGatherError(t *testing.T) {
	broken := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("boom") })
	for name, read := range map[string]func(testing.TB, prometheus.Gatherer, string, ...string) float64{
		"Value": Value, "Present": Present,
	} {
		if _, failed := run(func(tb testing.TB) float64 { return read(tb, broken, "x") }); !strings.Contains(failed, "boom") {
			t.Errorf("%s on a failing gatherer failed with %q, want the gather error", name, failed)
		}
	}
}
