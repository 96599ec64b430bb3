package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// Config configures a Kafka connector.
type Config struct {
	Name          string   // the connector's name (logs, metrics, /admin/connectors)
	Brokers       []string // seed brokers, host:port
	Topics        []string
	TopicRegex    bool // Topics are regular expressions
	ConsumerGroup string
	// StartEarliest starts a group with no committed offset at the oldest retained record
	// (else at the end: new records only).
	StartEarliest bool
	// InstanceID, if set, makes the member static: a restart with the same id gets its
	// partitions back without a rebalance.
	InstanceID             string
	SessionTimeout         time.Duration // default 10s
	CommitInterval         time.Duration // default 1s
	FetchMaxWait           time.Duration // default 100ms
	FetchMaxBytes          int           // default 16 MiB
	FetchMaxPartitionBytes int           // default 1 MiB
	MaxConcurrentFetches   int           // 0: one per broker
	MaxInFlight            int           // records of a partition fetched and not yet sent; default 1000
	DeadLetterTopic        string        // "": poison records are logged, counted and skipped
	// OrderByTarget sends the records of a partition to different targets (hub, kind, name)
	// concurrently, keeping partition order per target only; false: one record at a time.
	OrderByTarget bool
	SASL          SASL
	TLS           TLS
	// StopGrace is how long a stopping partition's send in flight may take before it is
	// cancelled (at a revoke or shutdown); default 5s.
	StopGrace time.Duration

	Deliverer *connector.Deliverer // required; its DeadLetter is set by New when DeadLetterTopic is
	Logger    *slog.Logger
	Metrics   *Metrics // required: NewMetrics
}

// SASL authenticates to the brokers.
type SASL struct {
	Mechanism, User, Password string // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; "": none
}

// TLS secures the connections to the brokers.
type TLS struct {
	Enabled                           bool
	CAFile, CertFile, KeyFile, Server string
	InsecureSkipVerify                bool
}

// Connector is one Kafka connector: Run consumes until its context ends.
type Connector struct {
	cfg     Config
	opts    []kgo.Opt
	log     *slog.Logger
	deliver *connector.Deliverer
	metrics *Metrics

	mu      sync.Mutex // guards the fields below
	cl      *kgo.Client
	workers map[partitionKey]*worker
	state   string
	lastErr string
	errAt   time.Time

	wg sync.WaitGroup // the workers
}

type partitionKey struct {
	topic     string
	partition int32
}

// States of a connector.
const (
	StateStarting = "starting" // Run not called yet, or no partition assigned yet
	StateRunning  = "running"  // a member of its group with partitions
	StateIdle     = "idle"     // a member of its group with no partition (more members than partitions)
	StateStopped  = "stopped"
)

// New checks cfg and prepares the connector; nothing connects before Run.
func New(cfg Config, deliver func(dead connector.DeadLetter) (*connector.Deliverer, error)) (*Connector, error) {
	if cfg.Metrics == nil {
		return nil, errors.New("kafka: Config.Metrics is required")
	}
	if len(cfg.Brokers) == 0 || len(cfg.Topics) == 0 || cfg.ConsumerGroup == "" {
		return nil, fmt.Errorf("kafka connector %s: brokers, topics and consumer_group are required", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&cfg.SessionTimeout, 10*time.Second)
	setDefault(&cfg.CommitInterval, time.Second)
	setDefault(&cfg.StopGrace, 5*time.Second)
	setDefault(&cfg.FetchMaxWait, 100*time.Millisecond)
	setDefault(&cfg.FetchMaxBytes, 16<<20)
	setDefault(&cfg.FetchMaxPartitionBytes, 1<<20)
	setDefault(&cfg.MaxInFlight, 1000)
	if cfg.CommitInterval < 100*time.Millisecond { // the client's own minimum
		return nil, fmt.Errorf("kafka connector %s: commit interval %s is under 100ms", cfg.Name, cfg.CommitInterval)
	}
	c := &Connector{cfg: cfg, log: cfg.Logger.With("connector", cfg.Name), metrics: cfg.Metrics,
		workers: map[partitionKey]*worker{}, state: StateStarting}
	var dead connector.DeadLetter
	if cfg.DeadLetterTopic != "" {
		dead = c.deadLetter
	}
	d, err := deliver(dead)
	if err != nil {
		return nil, err
	}
	c.deliver = d
	if c.opts, err = c.options(); err != nil {
		return nil, fmt.Errorf("kafka connector %s: %w", cfg.Name, err)
	}
	return c, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

func (c *Connector) options() ([]kgo.Opt, error) {
	cfg := c.cfg
	for _, t := range cfg.Topics {
		if cfg.TopicRegex {
			if _, err := regexp.Compile(t); err != nil {
				return nil, fmt.Errorf("topic regex %q: %w", t, err)
			}
		}
	}
	reset := kgo.NewOffset().AtEnd()
	if cfg.StartEarliest {
		reset = kgo.NewOffset().AtStart()
	}
	heartbeat := min(3*time.Second, cfg.SessionTimeout/3)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID("switchboard"),
		kgo.ConsumerGroup(cfg.ConsumerGroup),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(heartbeat),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(cfg.CommitInterval),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) { c.revoked(ctx, cl, m, true) }),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) { c.revoked(ctx, cl, m, false) }),
		// A fetch waiting at the broker holds back the partitions resumed meanwhile (the client
		// has one fetch in flight per broker): keep the wait short.
		kgo.FetchMaxWait(cfg.FetchMaxWait),
		kgo.FetchMaxBytes(int32(cfg.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(cfg.FetchMaxPartitionBytes)),
		kgo.AutoCommitCallback(c.committed),
		// Event Hubs has no idempotent producer; dead letters are few.
		kgo.DisableIdempotentWrite(),
		kgo.WithLogger(kgoLogger{c.log}),
		kgo.WithHooks(hooks{c}),
	}
	if cfg.TopicRegex {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if cfg.MaxConcurrentFetches > 0 {
		opts = append(opts, kgo.MaxConcurrentFetches(cfg.MaxConcurrentFetches))
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if m, err := cfg.SASL.mechanism(); err != nil {
		return nil, err
	} else if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if cfg.TLS.Enabled {
		t, err := cfg.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(t))
	}
	return opts, nil
}

func (s SASL) mechanism() (sasl.Mechanism, error) {
	switch s.Mechanism {
	case "":
		return nil, nil
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("SASL mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

func (t TLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.Server, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// Name returns the connector's name.
func (c *Connector) Name() string { return c.cfg.Name }

// maxPoll bounds the records one poll returns.
const maxPoll = 10000

// Run consumes until ctx ends, then stops the partitions' workers (each finishes the send in
// flight, within StopGrace), commits what was accepted and leaves. Unreachable brokers,
// rebalances and broker restarts are waited out (the client retries); Run returns an error
// only when the client cannot be made.
func (c *Connector) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(c.opts...)
	if err != nil {
		c.setState(StateStopped)
		return fmt.Errorf("kafka connector %s: %w", c.cfg.Name, err)
	}
	c.mu.Lock()
	c.cl = cl
	c.mu.Unlock()
	c.metrics.add(c)
	defer c.metrics.remove(c)
	c.log.Info("kafka connector started", "brokers", c.cfg.Brokers, "topics", c.cfg.Topics, "group", c.cfg.ConsumerGroup,
		"static_member", c.cfg.InstanceID != "")
	for {
		fetches := cl.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			failed = true
			c.metrics.errors.WithLabelValues(c.cfg.Name, "fetch").Inc()
			c.noteError(fmt.Errorf("fetch %s/%d: %w", topic, partition, err))
		})
		if failed && fetches.NumRecords() == 0 {
			pause(ctx, 250*time.Millisecond) // a poll that keeps failing at once must not spin
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			w := c.worker(p.Topic, p.Partition)
			if w == nil {
				return // revoked since the fetch: its next owner reads the records again
			}
			w.push(p.Records, p.HighWatermark)
		})
	}
	c.stop(cl)
	c.setState(StateStopped)
	c.log.Info("kafka connector stopped")
	return nil
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stop ends the workers, commits what they marked and closes the client.
func (c *Connector) stop(cl *kgo.Client) {
	c.mu.Lock()
	ws := make([]*worker, 0, len(c.workers))
	for k, w := range c.workers {
		ws = append(ws, w)
		delete(c.workers, k)
	}
	c.mu.Unlock()
	c.stopWorkers(ws)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.commitFailed(err)
	}
	cl.Close() // leaves the group (a static member does not: it is back within the session timeout)
	c.wg.Wait()
}

// assigned starts a worker for each new partition.
func (c *Connector) assigned(ctx context.Context, cl *kgo.Client, parts map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range parts {
		for _, p := range ps {
			k := partitionKey{topic, p}
			if c.workers[k] != nil {
				continue
			}
			w := newWorker(c, cl, topic, p)
			c.workers[k] = w
			c.wg.Add(1)
			go func() { defer c.wg.Done(); w.run() }()
		}
	}
	cl.ResumeFetchPartitions(parts) // never paused by an earlier owner of this member
	c.log.Info("kafka partitions assigned", "partitions", parts)
	c.state = c.stateLocked()
}

// revoked stops the workers of partitions taken away, and commits what they sent (not for
// partitions lost: the group has moved on and the commit would be refused).
func (c *Connector) revoked(ctx context.Context, cl *kgo.Client, parts map[string][]int32, commit bool) {
	var ws []*worker
	c.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			k := partitionKey{topic, p}
			if w := c.workers[k]; w != nil {
				ws = append(ws, w)
				delete(c.workers, k)
			}
		}
	}
	c.state = c.stateLocked()
	c.mu.Unlock()
	c.stopWorkers(ws)
	cl.ResumeFetchPartitions(parts) // a paused partition assigned here again starts unpaused
	if len(parts) > 0 {
		c.log.Info("kafka partitions revoked", "partitions", parts, "lost", !commit)
	}
	if commit {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := cl.CommitMarkedOffsets(ctx); err != nil {
			c.commitFailed(err)
		}
	}
}

// stopWorkers asks each worker to stop after the record in flight, waits StopGrace for
// them, then cancels what is still sending.
func (c *Connector) stopWorkers(ws []*worker) {
	for _, w := range ws {
		w.stopAfterRecord()
	}
	grace := time.NewTimer(c.cfg.StopGrace)
	defer grace.Stop()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-grace.C:
			for _, w := range ws {
				w.cancel()
			}
			<-w.done
		}
	}
}

func (c *Connector) worker(topic string, partition int32) *worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.workers[partitionKey{topic, partition}]
}

func (c *Connector) stateLocked() string {
	if c.state == StateStopped {
		return StateStopped
	}
	if len(c.workers) > 0 {
		return StateRunning
	}
	return StateIdle
}

func (c *Connector) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

func (c *Connector) noteError(err error) {
	c.mu.Lock()
	first := c.lastErr == "" || time.Since(c.errAt) > 10*time.Second
	c.lastErr, c.errAt = err.Error(), time.Now()
	c.mu.Unlock()
	if first { // at most one line every 10 s while the brokers are unreachable
		c.log.Warn("kafka connector error; retrying", "err", err)
	}
}

func (c *Connector) commitFailed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	c.metrics.errors.WithLabelValues(c.cfg.Name, "commit").Inc()
	c.noteError(fmt.Errorf("commit: %w", err))
}

// deadLetter writes a poison record to the dead-letter topic: its key, value and headers,
// and headers naming where it came from and why it was set aside.
func (c *Connector) deadLetter(ctx context.Context, r *connector.Record, p *connector.Poison) error {
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	rec := &kgo.Record{Topic: c.cfg.DeadLetterTopic, Key: r.Key, Value: r.Value}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	rec.Headers = append(rec.Headers,
		kgo.RecordHeader{Key: "switchboard-source", Value: []byte(r.Coordinates())},
		kgo.RecordHeader{Key: "switchboard-connector", Value: []byte(c.cfg.Name)},
		kgo.RecordHeader{Key: "switchboard-reason", Value: []byte(p.Reason)},
		kgo.RecordHeader{Key: "switchboard-error", Value: []byte(p.Err.Error())})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, rec).FirstErr()
}

// committed counts failed autocommits (the client retries them at the next interval).
func (c *Connector) committed(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
	if err == nil && resp != nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err = kerr.ErrorForCode(p.ErrorCode); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		c.commitFailed(err)
	}
}

// Status is what GET /admin/connectors shows of a connector.
type Status struct {
	Name          string            `json:"name"`
	Type          string            `json:"type"`
	State         string            `json:"state"`
	ConsumerGroup string            `json:"consumer_group"`
	Topics        []string          `json:"topics"`
	StaticMember  bool              `json:"static_member"`
	Partitions    []PartitionStatus `json:"partitions"`
	Lag           int64             `json:"lag"`
	Records       connector.Counts  `json:"records"` // since the start
	LastError     string            `json:"last_error,omitempty"`
	LastErrorAt   *time.Time        `json:"last_error_at,omitempty"`
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	NextOffset    int64  `json:"next_offset"` // the next offset to send; -1 before the first record
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
	Queued        int    `json:"queued"` // fetched, not yet sent
	Paused        bool   `json:"paused"` // fetching paused: max_in_flight records queued
}

// Status returns the connector's state, assignment and lag.
func (c *Connector) Status() Status {
	c.mu.Lock()
	s := Status{Name: c.cfg.Name, Type: "kafka", State: c.state, ConsumerGroup: c.cfg.ConsumerGroup,
		Topics: c.cfg.Topics, StaticMember: c.cfg.InstanceID != "", LastError: c.lastErr, Records: c.deliver.Counts()}
	if !c.errAt.IsZero() {
		at := c.errAt
		s.LastErrorAt = &at
	}
	ws := make([]*worker, 0, len(c.workers))
	for _, w := range c.workers {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		p := w.status()
		s.Lag += p.Lag
		s.Partitions = append(s.Partitions, p)
	}
	sort.Slice(s.Partitions, func(i, j int) bool {
		a, b := s.Partitions[i], s.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return s
}

// hooks reports the client's connection and group errors (retried by the client) in the
// status and metrics.
type hooks struct{ c *Connector }

func (h hooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.c.metrics.errors.WithLabelValues(h.c.cfg.Name, "connect").Inc()
		h.c.noteError(fmt.Errorf("connect to broker %s:%d: %w", meta.Host, meta.Port, err))
	}
}

func (h hooks) OnGroupManageError(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	h.c.metrics.errors.WithLabelValues(h.c.cfg.Name, "group").Inc()
	h.c.noteError(fmt.Errorf("consumer group: %w", err))
}

// kgoLogger passes the client's warnings and errors to slog.
type kgoLogger struct{ log *slog.Logger }

// Level is errors only: the client warns at every failed dial, which the hooks report at most
// every 10 s.
func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelError }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.log.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
