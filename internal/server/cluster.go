package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/cluster"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// NATS subject namespaces of the two core nodes' operations: the Web PubSub
// and the SignalR hubs of one name never mix.
const (
	clusterNamespaceWPS     = "wps"
	clusterNamespaceSignalR = "signalr"
)

// brokers are the core brokers of both namespaces: nil interfaces (core's
// in-process broker) on a single node.
type brokers struct {
	wps, signalr core.Broker
}

// newCluster joins the cluster when cluster.nats_url is set, and returns the
// brokers of both namespaces; on a single node it returns nothing and starts
// nothing.
func newCluster(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*cluster.Cluster, brokers, error) {
	cc := cfg.Cluster
	if !cc.Enabled() {
		return nil, brokers{}, nil
	}
	id := cfg.Server.NodeID
	if id == "" {
		var b [3]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	clus, err := cluster.Connect(context.Background(), cluster.Config{
		URLs: cc.NATSURL, NodeID: id,
		User: cc.NATSUser, Password: cc.NATSPassword, Token: cc.NATSToken, CredsFile: cc.NATSCredsFile,
		CAFile: cc.NATSCAFile, CertFile: cc.NATSCertFile, KeyFile: cc.NATSKeyFile,
		RequestTimeout: cc.RequestTimeout,
		ConfigDigest:   configDigest(cfg),
		// The largest REST body or client message, and room for the
		// envelope's ids, excluded list and filter.
		MaxOpBytes: max(cfg.Limits.MaxBodyBytes, cfg.Limits.MaxMessageBytes) + 64<<10,
		Logger:     log.With("component", "cluster"),
		Registerer: reg,
	})
	if err != nil {
		return nil, brokers{}, err
	}
	var b brokers
	for ns, dst := range map[string]*core.Broker{clusterNamespaceWPS: &b.wps, clusterNamespaceSignalR: &b.signalr} {
		br, err := clus.Broker(ns)
		if err != nil {
			closeCluster(clus, log)
			return nil, brokers{}, err
		}
		*dst = br
	}
	return clus, b, nil
}

// newClusterHistory returns the clustered durable history of both
// namespaces: JetStream streams shared by every node (see cluster.History).
func newClusterHistory(cfg config.Config, clus *cluster.Cluster, policies history.Policies) (wps, sr *cluster.History, err error) {
	hc := cluster.HistoryConfig{
		Policies:        policies,
		Replicas:        cfg.Cluster.HistoryReplicas,
		DuplicateWindow: cfg.History.IdempotencyWindow,
		MaxReplay:       cfg.History.MaxReplay,
		Timeout:         cfg.Cluster.RequestTimeout,
	}
	if wps, err = clus.History(clusterNamespaceWPS, hc); err != nil {
		return nil, nil, err
	}
	if sr, err = clus.History(clusterNamespaceSignalR, hc); err != nil {
		return nil, nil, err
	}
	return wps, sr, nil
}

// closeCluster leaves the cluster for a server that will not serve (or
// stopped serving on an error): it drains the NATS connection, waiting at
// most a few seconds.
func closeCluster(c *cluster.Cluster, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		log.Warn("leaving the cluster", "component", "cluster", "err", err)
	}
}

// clusterSummary is what GET /admin/cluster shows.
func clusterSummary(c *cluster.Cluster) func(context.Context) any {
	return func(ctx context.Context) any {
		if c == nil {
			return map[string]any{"enabled": false}
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return c.State(ctx)
	}
}

// relayConfig bounds the relays of clients between nodes.
func relayConfig(cfg config.Config) cluster.RelayConfig {
	return cluster.RelayConfig{Max: cfg.Cluster.MaxRelays, MaxQueueBytes: cfg.Limits.MaxQueueBytes}
}

// signalRRelayConfig is relayConfig for SignalR, whose relayed POSTs may
// wait for an upstream invocation: a call waits as long as the slowest
// upstream may, and the request timeout more.
func signalRRelayConfig(cfg config.Config) cluster.RelayConfig {
	rc := relayConfig(cfg)
	slowest := upstream.DefaultSignalRTimeout
	for _, u := range cfg.SignalR.Upstreams {
		slowest = max(slowest, u.Timeout)
	}
	rc.CallTimeout = slowest + cfg.Cluster.RequestTimeout
	return rc
}
