package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/connector"
	"github.com/switchboardhq/switchboard/internal/connector/kafka"
	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

// source is one configured connector of any type.
type source interface {
	Name() string
	// Run reads the source until ctx ends; then it finishes the sends in flight and commits
	// what was accepted.
	Run(ctx context.Context) error
	// Status is what GET /admin/connectors shows of it.
	Status() any
}

// kafkaSource and outboxSource are the connector types as sources.
type (
	kafkaSource  struct{ *kafka.Connector }
	outboxSource struct{ *outbox.Connector }
)

func (k kafkaSource) Status() any  { return k.Connector.Status() }
func (o outboxSource) Status() any { return o.Connector.Status() }

// connectors are the server's configured connectors; Serve runs them and stops them first
// at shutdown (before the sessions and the history close).
type connectors struct {
	list   []source
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	failed []error // connectors that stopped on an error while serving (readiness)
}

// namespace is where a connector sends: a node's hubs and the REST send's idempotent sender
// of that namespace (Web PubSub or SignalR).
type namespace struct {
	node  *core.Node
	sends durable.Sender
}

// newNamespace is the namespace of node with its view of the idempotency index; replays counts
// replayed sends (nil without history).
func newNamespace(node *core.Node, idem *history.Idempotency, replays durable.ReplayCounter) namespace {
	return namespace{node: node, sends: durable.Sender{Keys: idem, Replays: replays}}
}

// newConnectors prepares the connectors of cfg; they send into the hubs of their namespace
// through the REST send's idempotent sender (sr is nil without a SignalR endpoint).
func newConnectors(cfg config.Config, wps namespace, sr *namespace, log *slog.Logger, reg prometheus.Registerer) (*connectors, error) {
	cs := &connectors{}
	if len(cfg.Connectors) == 0 {
		return cs, nil
	}
	shared, err := connector.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	var km *kafka.Metrics
	var om *outbox.Metrics
	for _, k := range cfg.Connectors {
		ns := wps
		invocation := ""
		if k.Namespace == "signalr" {
			if sr == nil {
				return nil, fmt.Errorf("server: connector %s: namespace signalr needs signalr.addr", k.Name)
			}
			ns, invocation = *sr, k.Invocation
		}
		key := k.IdempotencyKey
		if k.Type == config.ConnectorPostgresOutbox && key == connector.DefaultIdempotencyKey {
			// A row's default key names the connector too: two connectors reading tables of
			// the same name in different databases into one hub do not take each other's keys.
			key = k.Name + "/" + key
		}
		mapping, err := connector.NewMapping(connector.Config{Hub: k.Hub, Group: k.Group, User: k.User, Connection: k.Connection,
			All: k.All, ContentType: k.ContentType, IdempotencyKey: key, Excluded: k.Excluded, Filter: k.Filter,
			Invocation: invocation})
		if err != nil {
			return nil, fmt.Errorf("server: connector %s: %w", k.Name, err)
		}
		clog := log.With("component", "connector")
		newDeliverer := func(dead connector.DeadLetter) (*connector.Deliverer, error) {
			return connector.NewDeliverer(connector.DeliverConfig{Name: k.Name, Mapping: mapping, Node: ns.node, Sends: ns.sends,
				DeadLetter: dead, Logger: clog, Metrics: shared})
		}
		switch k.Type {
		case config.ConnectorKafka:
		case config.ConnectorPostgresOutbox:
			if om == nil {
				if om, err = outbox.NewMetrics(reg); err != nil {
					return nil, err
				}
			}
			c, err := outbox.New(outbox.Config{Name: k.Name, DSN: k.DSN, Table: k.Table, DeadLetterTable: k.DeadLetterTable,
				Partitions: k.Partitions, PollInterval: k.PollInterval, BatchSize: k.BatchSize, Workers: k.Workers, Mark: k.Processed == "mark",
				OrderByTarget: k.Ordering == "target", MaxPayload: cfg.Limits.MaxBodyBytes,
				Logger: clog, Metrics: om}, newDeliverer)
			if err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
			cs.list = append(cs.list, outboxSource{c})
			continue
		default:
			return nil, fmt.Errorf("server: connector %s: type %s is not supported", k.Name, k.Type)
		}
		if km == nil {
			if km, err = kafka.NewMetrics(reg); err != nil {
				return nil, err
			}
		}
		c, err := kafka.New(kafka.Config{
			Name: k.Name, Brokers: k.Brokers, Topics: k.Topics, TopicRegex: k.TopicRegex, ConsumerGroup: k.ConsumerGroup,
			StartEarliest: k.StartOffset == "earliest", InstanceID: cfg.ConnectorInstanceID(k),
			SessionTimeout: k.SessionTimeout, CommitInterval: k.CommitInterval,
			FetchMaxWait: k.FetchMaxWait, FetchMaxBytes: k.FetchMaxBytes, FetchMaxPartitionBytes: k.FetchMaxPartitionBytes,
			MaxConcurrentFetches: k.MaxConcurrentFetches, MaxInFlight: k.MaxInFlight, DeadLetterTopic: k.DeadLetterTopic,
			OrderByTarget: k.Ordering == "target",
			SASL:          kafka.SASL{Mechanism: k.SASL.Mechanism, User: k.SASL.User, Password: k.SASL.Password},
			TLS: kafka.TLS{Enabled: k.TLS.Enabled, CAFile: k.TLS.CAFile, CertFile: k.TLS.CertFile, KeyFile: k.TLS.KeyFile,
				Server: k.TLS.ServerName, InsecureSkipVerify: k.TLS.InsecureSkipVerify},
			Logger: clog, Metrics: km,
		}, newDeliverer)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		cs.list = append(cs.list, kafkaSource{c})
	}
	return cs, nil
}

// start runs every connector until stop.
func (cs *connectors) start(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	cs.cancel = cancel
	for _, c := range cs.list {
		cs.wg.Add(1)
		go func() {
			defer cs.wg.Done()
			if err := c.Run(ctx); err != nil {
				log.Error("connector stopped", "component", "connector", "connector", c.Name(), "err", err)
				if ctx.Err() == nil {
					cs.mu.Lock()
					cs.failed = append(cs.failed, connectorFailure(c.Name(), err))
					cs.mu.Unlock()
				}
			}
		}()
	}
}

// stop ends the connectors: each finishes its sends in flight, commits what was accepted and
// leaves its group. It waits for them or ctx.
func (cs *connectors) stop(ctx context.Context) error {
	if cs.cancel == nil {
		return nil
	}
	cs.cancel()
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping connectors: %w", ctx.Err())
	}
}

// failures are the connectors that stopped on an error while serving.
func (cs *connectors) failures() []error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Clone(cs.failed)
}

// Connectors returns the state, assignment and lag of each configured connector (a
// kafka.Status or an outbox.Status).
func (s *Server) Connectors() []any { return s.conn.statuses() }

func (cs *connectors) statuses() []any {
	out := make([]any, 0, len(cs.list))
	for _, c := range cs.list {
		out = append(out, c.Status())
	}
	return out
}

// summary is what GET /admin/connectors shows.
func (cs *connectors) summary() any {
	return map[string]any{"connectors": cs.statuses()}
}
