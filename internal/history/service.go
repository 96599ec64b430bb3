package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Config configures a Service.
type Config struct {
	Dir          string // the log's directory (inside the data directory)
	Fsync        FsyncPolicy
	Policies     Policies
	SegmentBytes int64
	TrimInterval time.Duration
	// MaxReplay bounds the messages a recovering join replays; a client
	// further behind gets recovered: false and pages through the catch-up
	// API. Default 500.
	MaxReplay int
	// IdempotencyWindow is how long an Idempotency-Key is remembered;
	// default 10m. IdempotencyKeys bounds how many are; default 200,000.
	IdempotencyWindow time.Duration
	IdempotencyKeys   int
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
}

// Service is the history of one server: the policies, the log, the
// idempotency index and the metrics. It implements core.History.
type Service struct {
	log       *SegmentLog
	policies  Policies
	maxReplay int
	idem      *Idempotency
	metrics   *metrics
}

var _ core.History = (*Service)(nil)

// New opens the log in cfg.Dir and rebuilds the idempotency index from it.
func New(cfg Config) (*Service, error) {
	if err := cfg.Policies.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = 500
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = 10 * time.Minute
	}
	if cfg.IdempotencyKeys <= 0 {
		cfg.IdempotencyKeys = 200_000
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	s := &Service{policies: cfg.Policies, maxReplay: cfg.MaxReplay,
		idem: NewIdempotency(cfg.IdempotencyWindow, cfg.IdempotencyKeys)}
	m, err := newMetrics(cfg.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	l, err := OpenSegmentLog(Options{
		Dir: cfg.Dir, Fsync: cfg.Fsync, SegmentBytes: cfg.SegmentBytes, TrimInterval: cfg.TrimInterval,
		Policies: cfg.Policies, Logger: cfg.Logger, Observe: m,
		OnOpen: func(r *Record) {
			if r.Key != "" {
				s.idem.restore(r.Hub, r.Key, Fingerprint("group", r.Group, r.Type, r.Data),
					Result{Offset: r.Offset, Epoch: FormatEpoch(r.Epoch)}, time.Unix(0, r.Time))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	s.log = l
	return s, nil
}

// Close closes the log.
func (s *Service) Close() error { return s.log.Close() }

// Idempotency returns the idempotency index of REST sends.
func (s *Service) Idempotency() *Idempotency { return s.idem }

// Log returns the underlying log.
func (s *Service) Log() *SegmentLog { return s.log }

// Policies returns the retention rules.
func (s *Service) Policies() Policies { return s.policies }

// FormatEpoch is the text form of an epoch: 16 hex digits, "" for none.
func FormatEpoch(e uint64) string {
	if e == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", e)
}

// Keeps implements core.History.
func (s *Service) Keeps(hub, group string) bool {
	_, ok := s.policies.Lookup(hub, group)
	return ok
}

// Append implements core.History.
func (s *Service) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	r := Record{Hub: hub, Group: group, Type: uint8(m.Type), FromUserID: m.FromUserID, Key: m.IdempotencyKey, Data: m.Data}
	ack, err := s.log.Append(ctx, &r)
	if err != nil {
		return nil, fmt.Errorf("history: append to %s/%s: %w", hub, group, err)
	}
	m.Offset, m.Epoch = r.Offset, FormatEpoch(r.Epoch)
	return ack.Wait, nil
}

// Top implements core.History.
func (s *Service) Top(hub, group string) (uint64, string) {
	p := s.log.Top(hub, group)
	return p.Offset, FormatEpoch(p.Epoch)
}

// Replay implements core.History.
func (s *Service) Replay(hub, group string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	fail := func(reason string) ([]*core.Message, bool) {
		s.metrics.unrecoverable.WithLabelValues(hub, reason).Inc()
		return nil, false
	}
	p := s.log.Top(hub, group)
	epoch := FormatEpoch(p.Epoch)
	switch {
	case from.Epoch != "" && from.Epoch != epoch:
		return fail("epoch")
	case from.Offset > upTo:
		return fail("ahead")
	case from.Offset == upTo:
		return nil, true
	case upTo-from.Offset > uint64(s.maxReplay):
		return fail("too_many")
	}
	page, err := s.log.Read(hub, group, from.Offset, upTo, 0)
	switch {
	case errors.Is(err, ErrOffsetGone):
		return fail("gone")
	case err != nil:
		return fail("error")
	case uint64(len(page.Records)) != upTo-from.Offset:
		return fail("incomplete")
	}
	msgs := make([]*core.Message, len(page.Records))
	for i := range page.Records {
		msgs[i] = toMessage(group, epoch, &page.Records[i])
	}
	s.metrics.replayed.WithLabelValues(hub).Add(float64(len(msgs)))
	return msgs, true
}

func toMessage(group, epoch string, r *Record) *core.Message {
	return &core.Message{Type: core.DataType(r.Type), Data: r.Data, From: core.FromGroup, Group: group,
		FromUserID: r.FromUserID, Offset: r.Offset, Epoch: epoch}
}

// Messages is a page of a group's stream for the catch-up API.
type Messages struct {
	Epoch   string
	Offset  uint64 // the last durable offset
	Oldest  uint64 // the first retained offset (Offset+1 when none)
	More    bool   // more retained messages follow the page
	Records []Record
}

// CatchUp returns up to limit messages of group after offset after. epoch,
// when not "", must be the stream's. Errors: ErrNotKept, ErrEpochChanged,
// ErrOffsetGone, ErrOffsetAhead; the position is filled in with them.
func (s *Service) CatchUp(hub, group string, after uint64, epoch string, limit int) (Messages, error) {
	if !s.Keeps(hub, group) {
		return Messages{}, ErrNotKept
	}
	page, err := s.log.Read(hub, group, after, 0, limit)
	res := Messages{Epoch: FormatEpoch(page.Epoch), Offset: page.Offset, Oldest: page.Oldest, More: page.More, Records: page.Records}
	if res.Oldest == 0 {
		res.Oldest = res.Offset + 1
	}
	if epoch != "" && epoch != res.Epoch {
		s.metrics.unrecoverable.WithLabelValues(hub, "epoch").Inc()
		return Messages{Epoch: res.Epoch, Offset: res.Offset, Oldest: res.Oldest}, ErrEpochChanged
	}
	if err != nil {
		if errors.Is(err, ErrOffsetGone) {
			s.metrics.unrecoverable.WithLabelValues(hub, "gone").Inc()
		}
		res.Records = nil
		return res, err
	}
	s.metrics.replayed.WithLabelValues(hub).Add(float64(len(res.Records)))
	return res, nil
}

// Message turns a record of group into a core message.
func (m *Messages) Message(group string, i int) *core.Message {
	return toMessage(group, m.Epoch, &m.Records[i])
}

// IdempotentReplay counts a send answered from the idempotency index.
func (s *Service) IdempotentReplay(hub string) { s.metrics.idemReplays.WithLabelValues(hub).Inc() }

// Summary is what the admin endpoint shows.
type Summary struct {
	Policies map[string][]RuleView `json:"policies"`
	Log      Stats                 `json:"log"`
	Keys     int                   `json:"idempotencyKeys"`
}

// RuleView is a rule as the admin endpoint shows it.
type RuleView struct {
	Pattern     string `json:"pattern"`
	MaxMessages int    `json:"maxMessages"`
	MaxAge      string `json:"maxAge"`
}

// Summary describes the policies and the log.
func (s *Service) Summary() Summary {
	sum := Summary{Policies: map[string][]RuleView{}, Log: s.log.Stats(), Keys: s.idem.Len()}
	for hub, rules := range s.policies {
		for _, r := range rules {
			sum.Policies[hub] = append(sum.Policies[hub], RuleView{Pattern: r.Pattern, MaxMessages: r.MaxMessages, MaxAge: r.MaxAge.String()})
		}
	}
	return sum
}

type metrics struct {
	appends       *prometheus.CounterVec
	appendBytes   *prometheus.CounterVec
	fsyncs        prometheus.Counter
	trimmed       *prometheus.CounterVec
	replayed      *prometheus.CounterVec
	unrecoverable *prometheus.CounterVec
	idemReplays   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{}
	var errs []error
	reg1 := func(c *prometheus.CounterVec) *prometheus.CounterVec {
		c, err := metricreg.Register(reg, "history", c)
		errs = append(errs, err)
		return c
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return reg1(prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "history", Name: name, Help: help}, labels))
	}
	m.appends = cv("appends_total", "Messages made durable in group streams, by hub.", "hub")
	m.appendBytes = cv("append_bytes_total", "Bytes of records made durable, by hub.", "hub")
	m.trimmed = cv("trimmed_records_total", "Records dropped by retention, by hub.", "hub")
	m.replayed = cv("replayed_messages_total", "Messages served from history (recovering joins and catch-up reads), by hub.", "hub")
	m.unrecoverable = cv("unrecoverable_replays_total", "Recoveries and catch-up reads that could not be served, by hub and reason (epoch, gone, too_many, ahead, incomplete, error).", "hub", "reason")
	m.idemReplays = cv("idempotent_replays_total", "REST sends answered from the idempotency index, by hub.", "hub")
	fsyncs, err := metricreg.Register(reg, "history", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "history", Name: "fsyncs_total", Help: "fsync calls of the history log."}))
	errs = append(errs, err)
	m.fsyncs = fsyncs
	_, err = metricreg.Register(reg, "history", &sizeCollector{s: s, desc: prometheus.NewDesc("switchboard_history_log_bytes",
		"Bytes of retained records in the history log, by hub.", []string{"hub"}, nil)})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Appended implements Observer.
func (m *metrics) Appended(hub string, bytes int) {
	m.appends.WithLabelValues(hub).Inc()
	m.appendBytes.WithLabelValues(hub).Add(float64(bytes))
}

// Synced implements Observer.
func (m *metrics) Synced() { m.fsyncs.Inc() }

// Trimmed implements Observer.
func (m *metrics) Trimmed(hub string, records, _ int) {
	m.trimmed.WithLabelValues(hub).Add(float64(records))
}

// sizeCollector reports the log's size per hub at scrape time.
type sizeCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c *sizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sizeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.log == nil {
		return
	}
	for hub, n := range c.s.log.HubBytes() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), hub)
	}
}
