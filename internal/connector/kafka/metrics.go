package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// maxLagSeries bounds the partitions of one connector labelled by name in the lag metric;
// the others are summed under partition="_other".
const maxLagSeries = 256

// Metrics are the Kafka connectors' metrics on one registry (records, poison records and
// send errors are connector.Metrics).
type Metrics struct {
	errors  *prometheus.CounterVec
	records *prometheus.CounterVec
	lag     *lagCollector
}

// NewMetrics registers the Kafka connector metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var m Metrics
	var err error
	if m.errors, err = metricreg.Register(reg, "kafka connector", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_connector_kafka_errors_total",
		Help: "Errors of a Kafka connector's client, by kind: connect (a broker unreachable, TLS or SASL refused), group (the group session ended: rejoined), fetch, commit (retried at the next commit); each is retried.",
	}, []string{"connector", "kind"})); err != nil {
		return nil, err
	}
	if m.records, err = metricreg.Register(reg, "kafka connector", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_connector_kafka_records_total",
		Help: "Records of a Kafka connector sent and marked for commit (rate(): records/s).",
	}, []string{"connector"})); err != nil {
		return nil, err
	}
	if m.lag, err = metricreg.Register(reg, "kafka connector", newLagCollector()); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Metrics) delivered(name string, n int) { m.records.WithLabelValues(name).Add(float64(n)) }
func (m *Metrics) add(c *Connector)             { m.lag.conns.Add(c) }
func (m *Metrics) remove(c *Connector)          { m.lag.conns.Remove(c) }

// lagCollector reports the lag and assignment of the running connectors, read when scraped,
// so a revoked partition's series goes with it.
type lagCollector struct {
	lagDesc, assignedDesc *prometheus.Desc
	conns                 connector.Running[*Connector]
}

func newLagCollector() *lagCollector {
	return &lagCollector{
		lagDesc: prometheus.NewDesc("switchboard_connector_kafka_lag",
			"Records of an assigned partition not sent yet, as of its last fetch (the first 256 partitions of a connector by name, the rest summed as partition=\"_other\").",
			[]string{"connector", "topic", "partition"}, nil),
		assignedDesc: prometheus.NewDesc("switchboard_connector_kafka_assigned_partitions",
			"Partitions assigned to a Kafka connector on this node.", []string{"connector"}, nil),
	}
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.lagDesc
	ch <- l.assignedDesc
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l.conns.List() {
		s := c.Status()
		ch <- prometheus.MustNewConstMetric(l.assignedDesc, prometheus.GaugeValue, float64(len(s.Partitions)), s.Name)
		var other int64
		for i, p := range s.Partitions {
			if i >= maxLagSeries {
				other += p.Lag
				continue
			}
			ch <- prometheus.MustNewConstMetric(l.lagDesc, prometheus.GaugeValue, float64(p.Lag), s.Name, p.Topic, strconv.Itoa(int(p.Partition)))
		}
		if len(s.Partitions) > maxLagSeries {
			ch <- prometheus.MustNewConstMetric(l.lagDesc, prometheus.GaugeValue, float64(other), s.Name, "_other", "_other")
		}
	}
}
