package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the sum of the counter, gauge or untyped series of the
// family name in g whose labels include every pair of labels, given flat as
// name, value, name, value… (no pairs: every series of the family). It
// returns 0 when no series matches, as a labelled vector has no series until
// it is first used; see Present for metrics that must exist. It fails t when
// g cannot be gathered, labels has an odd length or the family is a
// histogram or summary.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, _ := read(t, g, name, labels)
	return v
}

// Present is Value that also fails t when no series matches, so that a
// misspelt or unregistered metric cannot pass for a zero.
func Present(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, found := read(t, g, name, labels)
	if !found {
		t.Fatalf("metrictest: no series of %s with labels %q", name, labels)
	}
	return v
}

// read sums the matching series and tells whether there was any.
func read(t testing.TB, g prometheus.Gatherer, name string, labels []string) (float64, bool) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metrictest: labels of %s are not name/value pairs: %q", name, labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("metrictest: gather %s: %v", name, err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				sum += m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				sum += m.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				sum += m.GetUntyped().GetValue()
			default:
				t.Fatalf("metrictest: %s is a %v, not a counter or gauge", name, mf.GetType())
			}
			found = true
		}
	}
	return sum, found
}

// hasLabels reports whether m carries every name/value pair of labels.
func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Histogram returns the sample count and sum of the histogram series of
// the family name in g whose labels include every pair of labels, added
// up (0, 0 when none matches). It fails t when g cannot be gathered or a
// matching series is not a histogram.
func Histogram(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("metrictest: gather %s: %v", name, err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			h := m.GetHistogram()
			if h == nil {
				t.Fatalf("metrictest: %s is a %v, not a histogram", name, mf.GetType())
			}
			count += h.GetSampleCount()
			sum += h.GetSampleSum()
		}
	}
	return count, sum
}
