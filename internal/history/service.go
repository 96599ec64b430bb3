package history

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
	// ProbeInterval is how often a log that failed for want of space (or
	// could not open) tries again; default 1s.
	ProbeInterval time.Duration
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
	log       atomic.Pointer[SegmentLog] // nil until the log opens
	policies  Policies
	maxReplay int
	idem      *Idempotency
	metrics   *metrics
	logger    *slog.Logger

	openErr  atomic.Pointer[UnavailableError] // why the log is not open yet
	stop     chan struct{}                    // closed by Close: stops the opener
	opener   sync.WaitGroup
	once     sync.Once
	closeErr error
}

var _ core.History = (*Service)(nil)

// New opens the log in cfg.Dir and rebuilds the idempotency index from it.
// When the log cannot be opened for want of space or an I/O error, New
// still returns the service, unavailable (appends fail with
// core.ErrHistoryUnavailable): a goroutine tries to open the log again every
// ProbeInterval until it opens or Close is called. A corrupt sealed segment
// (ErrCorruptSealed) is an error: it needs an operator.
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
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = time.Second
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{policies: cfg.Policies, maxReplay: cfg.MaxReplay, logger: cfg.Logger, stop: make(chan struct{}),
		idem: NewIdempotency(cfg.IdempotencyWindow, cfg.IdempotencyKeys)}
	m, err := newMetrics(cfg.Registerer, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	open := func() (*SegmentLog, error) {
		return OpenSegmentLog(Options{
			Dir: cfg.Dir, Fsync: cfg.Fsync, SegmentBytes: cfg.SegmentBytes, TrimInterval: cfg.TrimInterval,
			ProbeInterval: cfg.ProbeInterval, Policies: cfg.Policies, Logger: cfg.Logger, Observe: m,
			OnOpen: func(r *Record) {
				if r.Key != "" {
					s.idem.restore(r.Hub, r.Key, Fingerprint("group", r.Group, r.Type, r.Data),
						Result{Offset: r.Offset, Epoch: FormatEpoch(r.Epoch)}, time.Unix(0, r.Time))
				}
			},
		})
	}
	l, err := open()
	switch {
	case err == nil:
		s.log.Store(l)
		return s, nil
	case errors.Is(err, ErrCorruptSealed):
		return nil, err
	}
	s.openFailed(err)
	s.opener.Add(1)
	go s.reopen(open, cfg.ProbeInterval)
	return s, nil
}

// openFailed records why the log could not be opened.
func (s *Service) openFailed(err error) {
	s.metrics.WriteFailed(FailureCause(err))
	s.openErr.Store(&UnavailableError{cause: err})
}

// reopen tries to open the log every interval until it opens or the
// service closes.
func (s *Service) reopen(open func() (*SegmentLog, error), interval time.Duration) {
	defer s.opener.Done()
	s.logger.Error("history: the log could not be opened; sends to groups that keep history are refused until it opens", "err", s.openErr.Load().cause)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		l, err := open()
		if err != nil {
			if !errors.Is(err, ErrCorruptSealed) && FailureCause(err) == FailureCause(s.openErr.Load().cause) {
				s.logger.Debug("history: the log still cannot be opened", "err", err)
			} else {
				s.logger.Error("history: the log still cannot be opened", "err", err)
			}
			s.openErr.Store(&UnavailableError{cause: err})
			continue
		}
		s.log.Store(l)
		s.openErr.Store(nil)
		s.logger.Info("history: the log is open; sends to groups that keep history are accepted")
		return
	}
}

// Close stops the opener and closes the log. Later calls return the same
// result.
func (s *Service) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.opener.Wait()
		if l := s.log.Load(); l != nil {
			s.closeErr = l.Close()
		}
	})
	return s.closeErr
}

// Unavailable returns why sends to groups that keep history are refused (an
// error wrapping core.ErrHistoryUnavailable and the cause), nil when they
// are accepted.
func (s *Service) Unavailable() error {
	if l := s.log.Load(); l != nil {
		return l.Unavailable()
	}
	if e := s.openErr.Load(); e != nil {
		return e
	}
	return nil
}

// Rollbacks counts the failures that took back offsets given out (see
// SegmentLog.fail); core's recovering joins read it.
func (s *Service) Rollbacks() uint64 {
	if l := s.log.Load(); l != nil {
		return l.Rollbacks()
	}
	return 0
}

// Idempotency returns the idempotency index of REST sends.
func (s *Service) Idempotency() *Idempotency { return s.idem }

// Log returns the underlying log, nil while it is not open.
func (s *Service) Log() *SegmentLog { return s.log.Load() }

// Policies returns the retention rules.
func (s *Service) Policies() Policies { return s.policies }

// FormatEpoch is the text form of an epoch: 16 hex digits, "" for none.
func FormatEpoch(e uint64) string {
	if e == 0 {
		return ""
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], e)
	return hex.EncodeToString(b[:])
}

// Keeps implements core.History.
func (s *Service) Keeps(hub, group string) bool {
	_, ok := s.policies.Lookup(hub, group)
	return ok
}

// Append implements core.History.
func (s *Service) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	r := Record{Hub: hub, Group: group, Type: uint8(m.Type), FromUserID: m.FromUserID, Key: m.IdempotencyKey, Data: m.Data}
	l := s.log.Load()
	if l == nil {
		return nil, fmt.Errorf("history: append to %s/%s: %w", hub, group, s.Unavailable())
	}
	ack, err := l.Append(ctx, &r)
	if err != nil {
		return nil, fmt.Errorf("history: append to %s/%s: %w", hub, group, err)
	}
	m.Offset, m.Epoch = r.Offset, r.epochText
	return ack.WaitFunc(), nil
}

// Top implements core.History.
func (s *Service) Top(hub, group string) (uint64, string) {
	l := s.log.Load()
	if l == nil {
		return 0, "" // nothing is known of the stream before the log opens
	}
	p := l.Top(hub, group)
	return p.Offset, FormatEpoch(p.Epoch)
}

// Replay implements core.History.
func (s *Service) Replay(hub, group string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	fail := func(reason string) ([]*core.Message, bool) {
		s.metrics.unrecoverable.WithLabelValues(s.policies.MetricLabel(hub), reason).Inc()
		return nil, false
	}
	l := s.log.Load()
	if l == nil {
		return fail("unavailable")
	}
	p := l.Top(hub, group)
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
	page, err := l.Read(hub, group, from.Offset, upTo, 0)
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
	s.metrics.replayed.WithLabelValues(s.policies.MetricLabel(hub)).Add(float64(len(msgs)))
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
	l := s.log.Load()
	if l == nil {
		return Messages{}, s.Unavailable()
	}
	page, err := l.Read(hub, group, after, 0, limit)
	res := Messages{Epoch: FormatEpoch(page.Epoch), Offset: page.Offset, Oldest: page.Oldest, More: page.More, Records: page.Records}
	if res.Oldest == 0 {
		res.Oldest = res.Offset + 1
	}
	if epoch != "" && epoch != res.Epoch {
		s.metrics.unrecoverable.WithLabelValues(s.policies.MetricLabel(hub), "epoch").Inc()
		return Messages{Epoch: res.Epoch, Offset: res.Offset, Oldest: res.Oldest}, ErrEpochChanged
	}
	if err != nil {
		if errors.Is(err, ErrOffsetGone) {
			s.metrics.unrecoverable.WithLabelValues(s.policies.MetricLabel(hub), "gone").Inc()
		}
		res.Records = nil
		return res, err
	}
	s.metrics.replayed.WithLabelValues(s.policies.MetricLabel(hub)).Add(float64(len(res.Records)))
	return res, nil
}

// Message turns a record of group into a core message.
func (m *Messages) Message(group string, i int) *core.Message {
	return toMessage(group, m.Epoch, &m.Records[i])
}

// IdempotentReplay counts a send answered from the idempotency index.
func (s *Service) IdempotentReplay(hub string) {
	s.metrics.idemReplays.WithLabelValues(s.policies.MetricLabel(hub)).Inc()
}

// Summary is what the admin endpoint shows.
type Summary struct {
	Policies map[string][]RuleView `json:"policies"`
	Log      Stats                 `json:"log"`
	Keys     int                   `json:"idempotencyKeys"`
	// Unavailable says why sends to history groups are refused; "" when
	// they are not.
	Unavailable string `json:"unavailable,omitempty"`
}

// RuleView is a rule as the admin endpoint shows it.
type RuleView struct {
	Pattern     string `json:"pattern"`
	MaxMessages int    `json:"maxMessages"`
	MaxAge      string `json:"maxAge"`
}

// TopStreams returns the n group streams with the most retained bytes
// (SegmentLog.TopStreams), the hubs of another namespace (Namespace) with
// it in StreamStat.Namespace; none while the log is not open.
func (s *Service) TopStreams(n int) []StreamStat {
	l := s.log.Load()
	if l == nil {
		return []StreamStat{}
	}
	top := l.TopStreams(n)
	for i := range top {
		if ns, hub, ok := strings.Cut(top[i].Hub, namespaceSep); ok {
			top[i].Namespace, top[i].Hub = ns, hub
		}
	}
	return top
}

// Summary describes the policies and the log.
func (s *Service) Summary() Summary {
	sum := Summary{Policies: map[string][]RuleView{}, Keys: s.idem.Len()}
	if l := s.log.Load(); l != nil {
		sum.Log = l.Stats()
	}
	if err := s.Unavailable(); err != nil {
		sum.Unavailable = err.Error()
	}
	for hub, rules := range s.policies {
		for _, r := range rules {
			sum.Policies[hub] = append(sum.Policies[hub], RuleView{Pattern: r.Pattern, MaxMessages: r.MaxMessages, MaxAge: r.MaxAge.String()})
		}
	}
	return sum
}

type metrics struct {
	label         func(hub string) string // Policies.MetricLabel
	byLabel       sync.Map                // label → *hubCounters: the writer counts every record
	appends       *prometheus.CounterVec
	appendBytes   *prometheus.CounterVec
	fsyncs        prometheus.Counter
	trimmed       *prometheus.CounterVec
	replayed      *prometheus.CounterVec
	unrecoverable *prometheus.CounterVec
	idemReplays   *prometheus.CounterVec
	failures      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Service) (*metrics, error) {
	m := &metrics{label: s.policies.MetricLabel}
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
	m.failures = cv("write_failures_total", "Failed writes, fsyncs and opens of the history log, by cause (no_space, quota, io). Each refuses sends to history groups until the log recovers.", "cause")
	for _, c := range []string{"no_space", "quota", "io"} {
		m.failures.WithLabelValues(c)
	}
	_, err := metricreg.Register(reg, "history", prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "history", Name: "available",
		Help: "1 when the history log accepts sends to groups that keep history, 0 while its storage is unavailable (full disk, I/O error, not open)."},
		func() float64 {
			if s.Unavailable() != nil {
				return 0
			}
			return 1
		}))
	errs = append(errs, err)
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

// hubCounters are a hub label's series of the counters the log adds to for every record, looked
// up once rather than by their label values each time.
type hubCounters struct {
	appends, appendBytes, trimmed prometheus.Counter
}

func (m *metrics) counters(hub string) *hubCounters {
	label := m.label(hub) // one of a bounded set (MetricLabel), so byLabel is bounded too
	if c, ok := m.byLabel.Load(label); ok {
		return c.(*hubCounters)
	}
	c, _ := m.byLabel.LoadOrStore(label, &hubCounters{appends: m.appends.WithLabelValues(label),
		appendBytes: m.appendBytes.WithLabelValues(label), trimmed: m.trimmed.WithLabelValues(label)})
	return c.(*hubCounters)
}

// Appended implements Observer.
func (m *metrics) Appended(hub string, bytes int) {
	c := m.counters(hub)
	c.appends.Inc()
	c.appendBytes.Add(float64(bytes))
}

// Synced implements Observer.
func (m *metrics) Synced() { m.fsyncs.Inc() }

// WriteFailed implements Observer.
func (m *metrics) WriteFailed(cause string) { m.failures.WithLabelValues(cause).Inc() }

// Trimmed implements Observer.
func (m *metrics) Trimmed(hub string, records, _ int) {
	m.counters(hub).trimmed.Add(float64(records))
}

// sizeCollector reports the log's size per hub at scrape time.
type sizeCollector struct {
	s    *Service
	desc *prometheus.Desc
}

func (c *sizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sizeCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.s.log.Load()
	if l == nil {
		return
	}
	byLabel := map[string]int64{}
	for hub, n := range l.HubBytes() {
		byLabel[c.s.policies.MetricLabel(hub)] += int64(n)
	}
	for label, n := range byLabel {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), label)
	}
}
