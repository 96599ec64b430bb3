package signalr

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg"
)

type metrics struct {
	requests    *prometheus.CounterVec // client endpoint requests by kind and status
	rejected    *prometheus.CounterVec // refusals and protocol errors by reason
	messagesIn  *prometheus.CounterVec // hub messages from clients by protocol and kind
	invocations *prometheus.CounterVec // invocations forwarded upstream by result
	sessions    prometheus.Gauge       // negotiated or connected sessions
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "signalr", Name: "client_requests_total",
			Help: "Requests to the SignalR client endpoints, by kind (negotiate, websockets, sse, poll, send, delete, preflight) and status.",
		}, []string{"kind", "status"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "signalr", Name: "rejected_total",
			Help: "SignalR requests refused and connections closed for bad input, by reason.",
		}, []string{"reason"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "signalr", Name: "messages_in_total",
			Help: "Hub messages received from SignalR clients, by protocol and message kind.",
		}, []string{"protocol", "kind"}),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "switchboard", Subsystem: "signalr", Name: "invocations_total",
			Help: "Client invocations, by result (forwarded, completed, void, failed, no_upstream, unsupported), and client results handed to REST :invoke calls (client_result).",
		}, []string{"result"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "switchboard", Subsystem: "signalr", Name: "sessions",
			Help: "SignalR connections negotiated or open.",
		}),
	}
	var err error
	if m.requests, err = metricreg.Register(reg, "signalr", m.requests); err != nil {
		return nil, err
	}
	if m.rejected, err = metricreg.Register(reg, "signalr", m.rejected); err != nil {
		return nil, err
	}
	if m.messagesIn, err = metricreg.Register(reg, "signalr", m.messagesIn); err != nil {
		return nil, err
	}
	if m.invocations, err = metricreg.Register(reg, "signalr", m.invocations); err != nil {
		return nil, err
	}
	if m.sessions, err = metricreg.Register(reg, "signalr", m.sessions); err != nil {
		return nil, err
	}
	return m, nil
}
