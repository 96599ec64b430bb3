package rest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Metrics counts an API's requests: switchboard_rest_requests_total{operation,status} and
// switchboard_rest_request_duration_seconds{operation}. Both APIs register the same collectors,
// so on one registry they share them (metricreg); their operation labels tell them apart.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the collectors on reg (nil: a private registry) for owner, the API's
// name.
func NewMetrics(reg prometheus.Registerer, owner string) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	requests, err := metricreg.Register(reg, owner, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "rest", Name: "requests_total",
		Help: "Web PubSub REST requests, by operation and status code.",
	}, []string{"operation", "status"}))
	if err != nil {
		return nil, err
	}
	duration, err := metricreg.Register(reg, owner, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "switchboard", Subsystem: "rest", Name: "request_duration_seconds",
		Help:    "Time to answer Web PubSub REST requests, by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"operation"}))
	if err != nil {
		return nil, err
	}
	return &Metrics{requests: requests, duration: duration}, nil
}

// Observe counts a request of operation op answered with status, begun at start.
func (m *Metrics) Observe(op string, status int, start time.Time) {
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
