package outbox

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Metrics are the outbox connectors' metrics on one registry (records, poison records and
// send errors are connector.Metrics).
type Metrics struct {
	errors *prometheus.CounterVec
	rows   *prometheus.CounterVec
	txs    *prometheus.CounterVec
	lag    *lagCollector
}

// NewMetrics registers the outbox connector metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var m Metrics
	var err error
	if m.errors, err = metricreg.Register(reg, "outbox connector", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_connector_outbox_errors_total",
		Help: "Errors of a PostgreSQL outbox connector, by kind: connect (the database unreachable or the locking connection lost: reconnected with backoff), query (a partition's read or finish failed: retried), commit, lock; each is retried.",
	}, []string{"connector", "kind"})); err != nil {
		return nil, err
	}
	if m.rows, err = metricreg.Register(reg, "outbox connector", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_connector_outbox_rows_total",
		Help: "Outbox rows sent (or set aside) and deleted or marked, committed (rate(): rows/s).",
	}, []string{"connector"})); err != nil {
		return nil, err
	}
	if m.txs, err = metricreg.Register(reg, "outbox connector", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_connector_outbox_transactions_total",
		Help: "Transactions of an outbox connector that finished rows, committed (rows_total over it: rows per transaction; a worker's transaction serves all its partitions).",
	}, []string{"connector"})); err != nil {
		return nil, err
	}
	if m.lag, err = metricreg.Register(reg, "outbox connector", newLagCollector()); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Metrics) add(c *Connector)    { m.lag.conns.Add(c) }
func (m *Metrics) remove(c *Connector) { m.lag.conns.Remove(c) }

// lagCollector reports the partitions held by the running connectors and their lag, read
// when scraped (a partition given up takes its series with it; at most 256 per connector).
type lagCollector struct {
	lagDesc, heldDesc *prometheus.Desc
	conns             connector.Running[*Connector]
}

func newLagCollector() *lagCollector {
	return &lagCollector{
		lagDesc: prometheus.NewDesc("switchboard_connector_outbox_lag_seconds",
			"Age of the oldest row known unsent of an outbox partition this node holds (0: its last read found every row sent).",
			[]string{"connector", "partition"}, nil),
		heldDesc: prometheus.NewDesc("switchboard_connector_outbox_partitions_held",
			"Outbox partitions this node holds (their advisory locks).", []string{"connector"}, nil),
	}
}

func (l *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- l.lagDesc
	ch <- l.heldDesc
}

func (l *lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l.conns.List() {
		s := c.Status()
		ch <- prometheus.MustNewConstMetric(l.heldDesc, prometheus.GaugeValue, float64(len(s.Held)), s.Name)
		for _, p := range s.Held {
			ch <- prometheus.MustNewConstMetric(l.lagDesc, prometheus.GaugeValue, p.LagSeconds, s.Name, strconv.Itoa(p.Partition))
		}
	}
}
