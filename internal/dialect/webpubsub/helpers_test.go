package webpubsub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gathered wraps a gathered family so testutil.ToFloat64 can read it.
type gathered struct{ mf *dto.MetricFamily }

func (g gathered) Describe(ch chan<- *prometheus.Desc) {}
func (g gathered) Collect(ch chan<- prometheus.Metric) {
	for _, m := range g.mf.GetMetric() {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.mf.GetName(), "", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
	}
}

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }

func (s *testServer) nodeMetric(t interface{ Fatal(...any) }) prometheus.Collector {
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "switchboard_conn_slow_consumer_closes_total" {
			return gathered{mf}
		}
	}
	t.Fatal("metric switchboard_conn_slow_consumer_closes_total not found")
	return nil
}
