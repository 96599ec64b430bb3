package upstream

import (
	"github.com/switchboardhq/switchboard/internal/metricreg"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of switchboard_upstream_dropped_total.
const (
	dropQueueFull = "queue_full"        // QueueLimit reached
	dropRetries   = "retries_exhausted" // every attempt failed
	dropRefused   = "refused"           // the host refused the abuse-protection validation
	dropInvalid   = "invalid"           // the event cannot be sent (bad header value or URL)
	dropClosed    = "closed"            // the Client was closed
)

type metrics struct {
	requests           *prometheus.CounterVec   // event, status
	duration           *prometheus.HistogramVec // event
	retries            *prometheus.CounterVec   // event
	dropped            *prometheus.CounterVec   // event, reason
	validationFailures prometheus.Counter
	queued             prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.requests, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "requests_total",
		Help: "Event handler requests, by event kind (connect, connected, disconnected, user) and HTTP status (or \"error\").",
	}, []string{"event", "status"})); err != nil {
		return nil, err
	}
	if m.duration, err = metricreg.Register(reg, "upstream", prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "request_duration_seconds",
		Help:    "Time for an event handler to answer, by event kind.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"event"})); err != nil {
		return nil, err
	}
	if m.retries, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "retries_total",
		Help: "Retries of asynchronous events after a network error, 408, 429 or 5xx, by event kind.",
	}, []string{"event"})); err != nil {
		return nil, err
	}
	if m.dropped, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "dropped_total",
		Help: "Asynchronous events given up, by event kind and reason (queue_full, retries_exhausted, refused, invalid, closed).",
	}, []string{"event", "reason"})); err != nil {
		return nil, err
	}
	if m.validationFailures, err = metricreg.Register(reg, "upstream", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "validation_failures_total",
		Help: "Abuse-protection validations of handler hosts that failed (refused or unreachable).",
	})); err != nil {
		return nil, err
	}
	if m.queued, err = metricreg.Register(reg, "upstream", prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: "queued_events",
		Help: "Asynchronous events queued or waiting for a retry.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}
