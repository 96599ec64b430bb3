package upstream

import (
	"github.com/switchboardhq/switchboard/internal/metricreg"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of switchboard_upstream_dropped_total and switchboard_upstream_signalr_dropped_total.
const (
	dropQueueFull = "queue_full"        // QueueLimit reached
	dropRetries   = "retries_exhausted" // every attempt failed
	dropRefused   = "refused"           // the host refused the abuse-protection validation
	dropInvalid   = "invalid"           // the event cannot be sent (bad header value or URL)
	dropClosed    = "closed"            // the client was closed
)

// Protocols, each with its own metric families: switchboard_upstream_* for Web PubSub
// event handlers, switchboard_upstream_signalr_* for SignalR upstreams.
const (
	protoWebPubSub = ""
	protoSignalR   = "signalr"
)

type metrics struct {
	requests *prometheus.CounterVec   // event, status
	duration *prometheus.HistogramVec // event
	retries  *prometheus.CounterVec   // event
	dropped  *prometheus.CounterVec   // event, reason
	queued   prometheus.Gauge
	// validationFailures counts abuse-protection failures; nil for SignalR, which has none.
	validationFailures prometheus.Counter
}

// newMetrics registers the metrics of protocol on reg, or returns those registered
// before by another client of the same protocol.
func newMetrics(reg prometheus.Registerer, protocol string) (*metrics, error) {
	prefix, who, kinds := "", "event handler", "connect, connected, disconnected, user, joined, left"
	if protocol != protoWebPubSub {
		prefix, who, kinds = protocol+"_", "SignalR upstream", "connected, disconnected, invocation"
	}
	var m metrics
	var err error
	if m.requests, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: prefix + "requests_total",
		Help: "Requests to a " + who + " (every attempt), by event kind (" + kinds + ") and HTTP status (or \"error\").",
	}, []string{"event", "status"})); err != nil {
		return nil, err
	}
	if m.duration, err = metricreg.Register(reg, "upstream", prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: prefix + "request_duration_seconds",
		Help:    "Time for a " + who + " to answer, by event kind.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"event"})); err != nil {
		return nil, err
	}
	if m.retries, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: prefix + "retries_total",
		Help: "Retries of asynchronous " + who + " events after a network error, 408, 429 or 5xx, by event kind.",
	}, []string{"event"})); err != nil {
		return nil, err
	}
	if m.dropped, err = metricreg.Register(reg, "upstream", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: prefix + "dropped_total",
		Help: "Asynchronous " + who + " events given up, by event kind and reason (queue_full, retries_exhausted, refused, invalid, closed).",
	}, []string{"event", "reason"})); err != nil {
		return nil, err
	}
	if m.queued, err = metricreg.Register(reg, "upstream", prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "upstream", Name: prefix + "queued_events",
		Help: "Asynchronous " + who + " events queued or waiting for a retry.",
	})); err != nil {
		return nil, err
	}
	if protocol == protoWebPubSub {
		if m.validationFailures, err = metricreg.Register(reg, "upstream", prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "upstream", Name: "validation_failures_total",
			Help: "Abuse-protection validations of handler hosts that failed (refused or unreachable).",
		})); err != nil {
			return nil, err
		}
	}
	return &m, nil
}
