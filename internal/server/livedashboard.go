package server

import (
	"cmp"
	"context"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/cluster"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dashboard"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// newTracer returns the dashboard's live trace, nil when the dashboard is
// off (then core and upstream get no observer at all).
func newTracer(cfg config.Config, reg prometheus.Registerer) (*dashboard.Tracer, error) {
	if !cfg.Dashboard.Enabled {
		return nil, nil
	}
	return dashboard.NewTracer(dashboard.TraceConfig{Registerer: reg})
}

// nodeObserver is the core observer of namespace ns: nil without a tracer.
func nodeObserver(t *dashboard.Tracer, ns string) core.Observer {
	if t == nil {
		return nil
	}
	return t.Namespace(ns)
}

// callObserver is the event handlers' observer: nil without a tracer.
func callObserver(t *dashboard.Tracer) upstream.CallObserver {
	if t == nil {
		return nil
	}
	return t
}

// traceAcrossNodes names the tracer's node and, on a cluster, links it to
// the other nodes' (at most 1000 events a second cross NATS from a node).
func traceAcrossNodes(t *dashboard.Tracer, node string, clus *cluster.Cluster) error {
	if t == nil {
		return nil
	}
	t.SetNode(node)
	if clus == nil {
		return nil
	}
	link, err := clus.TraceLink(1000, t.RemoteWatching, t.DeliverRemote)
	if err != nil {
		return err
	}
	t.UseRelay(link)
	return nil
}

// newDashboard returns the dashboard of s, nil when it is off. On a
// cluster it answers the other nodes' summary requests.
func newDashboard(cfg config.Config, s *Server, tracer *dashboard.Tracer, rates *ratelimit.Limiter,
	history func() any, clusterState func(context.Context) any) (*dashboard.Dashboard, error) {
	if tracer == nil {
		return nil, nil
	}
	var peers func(context.Context) (map[string][]byte, map[string]string)
	if s.clus != nil {
		peers = s.clus.Summaries
	}
	nss := []dashboard.Namespace{{Name: "webpubsub", Node: s.node}}
	if s.sr != nil {
		nss = append(nss, dashboard.Namespace{Name: signalRNamespace, Node: s.sr.node})
	}
	return dashboard.New(dashboard.Config{
		Keys:                    s.keys,
		Secret:                  cfg.Dashboard.Secret,
		SessionTTL:              cfg.Dashboard.SessionTTL,
		AllowAnonymousLocalhost: cfg.Dashboard.AllowAnonymousLocalhost,
		Namespaces:              nss,
		Tracer:                  tracer,
		Gatherer:                s.reg,
		Cluster:                 clusterState,
		History:                 history,
		Streams:                 topStreams(s.hist, s.jsHist),
		Peers:                   peers,
		Connectors:              func() any { return s.conn.summary() },
		Endpoint:                func() string { return s.Endpoint() },
		SignalREndpoint:         s.SignalREndpoint,
		ClientIP:                rates.ClientIP,
		MaxBodyBytes:            int64(cfg.Limits.MaxBodyBytes),
		Logger:                  s.log.With("component", "dashboard"),
		Registerer:              s.reg,
	})
}

// topStreams returns the biggest history streams of the embedded log, or
// of JetStream on a cluster (both namespaces'); nil without history.
func topStreams(h *history.Service, js []*cluster.History) func(context.Context, int) []history.StreamStat {
	switch {
	case len(js) > 0:
		names := []string{"webpubsub", signalRNamespace}
		return func(ctx context.Context, n int) []history.StreamStat {
			var all []history.StreamStat
			for i, h := range js {
				for _, st := range h.TopStreams(ctx, n) {
					st.Namespace = names[min(i, len(names)-1)]
					all = append(all, st)
				}
			}
			slices.SortStableFunc(all, func(a, b history.StreamStat) int { return cmp.Compare(b.Messages, a.Messages) })
			return all[:min(n, len(all))]
		}
	case h != nil:
		return func(_ context.Context, n int) []history.StreamStat {
			top := h.TopStreams(n)
			for i := range top {
				top[i].Namespace = cmp.Or(top[i].Namespace, "webpubsub")
			}
			return top
		}
	}
	return nil
}

// Tracer returns the dashboard's live trace, nil when the dashboard is off.
func (s *Server) Tracer() *dashboard.Tracer {
	if s.dash == nil {
		return nil
	}
	return s.dash.Tracer()
}
