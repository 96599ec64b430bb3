package connector

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// DeadLetter sets a poison record aside (a dead-letter topic, a table).
type DeadLetter func(ctx context.Context, r *Record, p *Poison) error

// Deliverer sends the records of one connector: each is mapped and sent through the REST
// send's code (durable.Sender: the same idempotency and history), retried while the send is
// refused for a reason that passes (history unavailable, the hub limit, the cluster), and set
// aside when it is poison. It is safe for concurrent use by the workers of several partitions.
type Deliverer struct {
	name       string
	mapping    *Mapping
	node       *core.Node
	sends      durable.Sender
	deadLetter DeadLetter
	log        *slog.Logger
	metrics    *Metrics
	backoff    Backoff
	counts     struct{ sent, replayed, poison, refused atomic.Int64 }
	// The connector's series of metrics.records and metrics.sendErrors, looked up once: a
	// lookup hashes the labels, for every record.
	sentRecords, replayedRecords, sendErrors prometheus.Counter
}

// Counts are a Deliverer's totals since it was made.
type Counts struct {
	Sent     int64 `json:"sent"`     // sends accepted
	Replayed int64 `json:"replayed"` // redeliveries answered from the idempotency index
	Poison   int64 `json:"poison"`   // records set aside
	Refused  int64 `json:"refused"`  // refused attempts, each retried
}

// Counts returns the totals of what Deliver did.
func (d *Deliverer) Counts() Counts {
	return Counts{Sent: d.counts.sent.Load(), Replayed: d.counts.replayed.Load(), Poison: d.counts.poison.Load(), Refused: d.counts.refused.Load()}
}

// Backoff is how long a refused send waits before its next attempt: Min, doubling up to Max.
type Backoff struct {
	Min, Max time.Duration
}

// DeliverConfig configures a Deliverer.
type DeliverConfig struct {
	Name    string   // the connector's name: logs and the connector label of metrics
	Mapping *Mapping // required
	Node    *core.Node
	// Sends is the REST send's idempotent sender (its Keys: the Web PubSub namespace's index).
	Sends durable.Sender
	// DeadLetter, if set, receives poison records; it is tried deadLetterAttempts times.
	DeadLetter DeadLetter
	Logger     *slog.Logger
	Metrics    *Metrics // required: NewMetrics
	Backoff    Backoff  // zero: 100ms to 5s
}

// NewDeliverer returns a Deliverer.
func NewDeliverer(c DeliverConfig) (*Deliverer, error) {
	if c.Mapping == nil || c.Node == nil || c.Metrics == nil {
		return nil, errors.New("connector: DeliverConfig needs Mapping, Node and Metrics")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Backoff.Min <= 0 {
		c.Backoff.Min = 100 * time.Millisecond
	}
	if c.Backoff.Max < c.Backoff.Min {
		c.Backoff.Max = max(5*time.Second, c.Backoff.Min)
	}
	return &Deliverer{name: c.Name, mapping: c.Mapping, node: c.Node, sends: c.Sends, deadLetter: c.DeadLetter,
		log: c.Logger, metrics: c.Metrics, backoff: c.Backoff,
		sentRecords:     c.Metrics.records.WithLabelValues(c.Name, "sent"),
		replayedRecords: c.Metrics.records.WithLabelValues(c.Name, "replayed"),
		sendErrors:      c.Metrics.sendErrors.WithLabelValues(c.Name)}, nil
}

// deadLetterAttempts bounds the tries of the dead-letter destination, so that one that is
// gone for good does not hold the records behind a poison record for ever.
const deadLetterAttempts = 5

// Deliver sends r and returns nil once its send was accepted (for a group that keeps
// history: durable), answered from the idempotency index (a redelivery), or r was found to be
// poison and set aside: the source may then commit r. A refused send is retried until it is
// accepted or ctx ends; then Deliver returns ctx's error and r must not be committed.
func (d *Deliverer) Deliver(ctx context.Context, r *Record) error {
	s, err := d.Place(r)
	return d.DeliverPlaced(ctx, r, s, err)
}

// Place maps r (Mapping.Map): a source that sends records to different targets concurrently
// places them first.
func (d *Deliverer) Place(r *Record) (Send, error) { return d.mapping.Map(r) }

// DeliverPlaced is Deliver for a record already placed: s and err are what Place returned.
func (d *Deliverer) DeliverPlaced(ctx context.Context, r *Record, s Send, err error) (derr error) {
	ctx, span := d.traceRecord(ctx, r)
	if span != nil {
		defer func() { endRecord(span, derr) }()
	}
	if err != nil {
		return d.poison(ctx, r, err)
	}
	wait := d.backoff.Min
	for attempt := 0; ; attempt++ {
		sent, err := d.send(ctx, s)
		switch {
		case err == nil:
			d.countSent(sent)
			if attempt > 0 {
				d.log.Info("connector send accepted again", "connector", d.name, "record", r.Coordinates(), "attempts", attempt+1)
			}
			return nil
		case permanent(err):
			return d.poison(ctx, r, &Poison{Reason: ReasonRefused, Err: err})
		case ctx.Err() != nil:
			return ctx.Err()
		}
		d.counts.refused.Add(1)
		d.sendErrors.Inc()
		if attempt == 0 || wait == d.backoff.Max {
			d.log.Warn("connector send refused; retrying, the record is not committed", "connector", d.name,
				"record", r.Coordinates(), "hub", s.Hub, "target", s.Target.Kind.String(), "err", err, "retry_in", wait)
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, d.backoff.Max)
	}
}

// Placed is a record and what Place said of it.
type Placed struct {
	Record *Record
	Send   Send
	Err    error // a poison record
}

// MaxRun bounds the records of a run that DeliverRun keeps in flight.
const MaxRun = 64

// RunLength is how many records of placed, from the first, DeliverRun can take as one run:
// records to the first one's target (Send.TargetKey), none poison, each after the first with
// its own key (Send.OwnKey: a key another record may carry could wait for a send that waits
// for this run), at most MaxRun; at least 1.
func RunLength(placed []Placed) int {
	if len(placed) == 0 || placed[0].Err != nil {
		return min(1, len(placed))
	}
	lead := placed[0].Send
	n := 1
	for n < len(placed) && n < MaxRun && placed[n].Err == nil && placed[n].Send.OwnKey && placed[n].Send.SameTarget(lead) {
		n++
	}
	return n
}

// DeliverRun delivers a run of records to one target (see RunLength) in order, with all of
// them in flight at once: each is started (its place in the target's order taken: for a history
// group, its record appended) before the next, then each is finished in order, so that one
// fsync of the history covers many. It returns how many records of the run, from the first,
// are done (sent or replayed, or the first set aside as poison): the source may commit them.
// That is at least one unless ctx ends (then 0 and ctx's error): when a send of the run is
// refused, the ones after it are not counted (for a history group they are refused too: a
// failed write refuses what was appended after it), and a run none of whose sends went through
// delivers its first record alone, with Deliver's retries and poison handling.
func (d *Deliverer) DeliverRun(ctx context.Context, run []Placed) (int, error) {
	if len(run) == 0 {
		return 0, nil
	}
	done := d.FinishRun(d.StartRun(ctx, run))
	if done > 0 {
		return done, nil
	}
	if err := d.DeliverPlaced(ctx, run[0].Record, run[0].Send, run[0].Err); err != nil {
		return 0, err
	}
	return 1, nil
}

// StartedRun is a run whose sends StartRun started: FinishRun finishes them.
type StartedRun struct {
	finishes []func() (durable.Sent, error)
	spans    []trace.Span // each started record's, when tracing is on
}

// Started is how many records of the run, from the first, were started: FinishRun can count
// no more than these as done.
func (s *StartedRun) Started() int { return len(s.finishes) }

// StartRun is DeliverRun's first half: it starts the run's records in order (for a history
// group: appends them) up to the first that is poison, whose key the run started already, or
// whose start fails. FinishRun must be called on what it returns, exactly once: until then the
// started sends hold their targets' later sends. A source that keeps several runs in flight
// starts each after the previous one (their records then keep that order) and finishes them in
// the order they were started.
func (d *Deliverer) StartRun(ctx context.Context, run []Placed) *StartedRun {
	s := &StartedRun{finishes: make([]func() (durable.Sent, error), 0, len(run))}
	var keys map[string]struct{} // made at the first key that is not its record's own
	for i, p := range run {
		if p.Err != nil {
			break
		}
		if !p.Send.OwnKey && keys == nil {
			keys = make(map[string]struct{}, len(run))
			for _, q := range run[:i] {
				keys[q.Send.Key] = struct{}{}
			}
		}
		if _, dup := keys[p.Send.Key]; dup && p.Send.Key != "" {
			break // a key started twice would wait for itself
		}
		rctx, span := d.traceRecord(ctx, p.Record)
		f, err := d.start(rctx, p.Send)
		if err != nil {
			endRecord(span, err)
			break
		}
		if keys != nil {
			keys[p.Send.Key] = struct{}{}
		}
		s.finishes = append(s.finishes, f)
		if span != nil {
			s.spans = append(s.spans, span)
		}
	}
	return s
}

// FinishRun is DeliverRun's second half: it finishes every started send of s in order and
// returns how many, from the first, are done (sent or replayed): the source may commit them.
// When one is refused, the ones after it are not counted. Unlike DeliverRun it does not
// retry: a run none of whose sends went through returns 0, and the source delivers its first
// record with DeliverPlaced once nothing of it is in flight any more.
func (d *Deliverer) FinishRun(s *StartedRun) int {
	done, failed := 0, false
	for i, f := range s.finishes { // every started send is finished, in order
		sent, err := f()
		if i < len(s.spans) {
			endRecord(s.spans[i], err)
		}
		switch {
		case failed:
		case err != nil:
			failed = true
			d.counts.refused.Add(1)
			d.sendErrors.Inc()
		default:
			d.countSent(sent)
			done++
		}
	}
	return done
}

func (d *Deliverer) countSent(sent durable.Sent) {
	if sent.Replayed {
		d.counts.replayed.Add(1)
		d.replayedRecords.Inc()
	} else {
		d.counts.sent.Add(1)
		d.sentRecords.Inc()
	}
}

// start starts s (durable.Sender.Start) with a message of its own.
func (d *Deliverer) start(ctx context.Context, s Send) (func() (durable.Sent, error), error) {
	hub, err := d.node.ViewHub(s.Hub)
	if err != nil {
		return nil, err
	}
	m := s.Message.message()
	return d.sends.Start(ctx, s.Key, hub, s.Target, m)
}

func (d *Deliverer) send(ctx context.Context, s Send) (durable.Sent, error) {
	hub, err := d.node.ViewHub(s.Hub)
	if err != nil {
		return durable.Sent{}, err
	}
	// The message is the send's own: a retry after a refusal sends a fresh copy.
	m := s.Message.message()
	return d.sends.Send(ctx, s.Key, hub, s.Target, m)
}

// permanent reports an error that a retry of the same send gets again.
func permanent(err error) bool {
	var f *durable.Failure
	return errors.As(err, &f) || errors.Is(err, core.ErrInvalidHub) || errors.Is(err, core.ErrInvalidGroup)
}

func (d *Deliverer) poison(ctx context.Context, r *Record, err error) error {
	var p *Poison
	if !errors.As(err, &p) {
		p = &Poison{Reason: ReasonRefused, Err: err}
	}
	d.counts.poison.Add(1)
	d.metrics.records.WithLabelValues(d.name, "poison").Inc()
	d.metrics.poison.WithLabelValues(d.name, p.Reason).Inc()
	d.log.Warn("connector skips a poison record", "connector", d.name, "topic", r.Topic, "partition", r.Partition,
		"offset", r.Offset, "reason", p.Reason, "err", p.Err, "dead_letter", d.deadLetter != nil)
	if d.deadLetter == nil {
		return nil
	}
	wait := d.backoff.Min
	for attempt := 1; ; attempt++ {
		err := d.deadLetter(ctx, r, p)
		if err == nil {
			d.metrics.deadLetters.WithLabelValues(d.name, "ok").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == deadLetterAttempts {
			d.metrics.deadLetters.WithLabelValues(d.name, "failed").Inc()
			d.log.Error("connector could not set a poison record aside; it is skipped", "connector", d.name,
				"record", r.Coordinates(), "attempts", attempt, "err", err)
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, d.backoff.Max)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Metrics are the counters every connector type shares, labelled by connector name.
type Metrics struct {
	records     *prometheus.CounterVec
	poison      *prometheus.CounterVec
	sendErrors  *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
}

// NewMetrics registers the connector metrics on reg (shared by the connectors of a registry).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var m Metrics
	var err error
	for _, c := range []struct {
		v          **prometheus.CounterVec
		name, help string
		labels     []string
	}{
		{&m.records, "switchboard_connector_records_total", "Records a connector finished, by result: sent, replayed (a redelivery answered from the idempotency index) or poison.", []string{"connector", "result"}},
		{&m.poison, "switchboard_connector_poison_records_total", "Records a connector could not place or send, set aside (dead-letter destination) and skipped, by reason.", []string{"connector", "reason"}},
		{&m.sendErrors, "switchboard_connector_send_errors_total", "Sends of a connector refused for a reason that passes (history unavailable, hub limit, cluster); each is retried.", []string{"connector"}},
		{&m.deadLetters, "switchboard_connector_dead_letters_total", "Poison records written to the dead-letter destination (ok), or skipped after it failed (failed).", []string{"connector", "result"}},
	} {
		if *c.v, err = metricreg.Register(reg, "connector", prometheus.NewCounterVec(prometheus.CounterOpts{Name: c.name, Help: c.help}, c.labels)); err != nil {
			return nil, err
		}
	}
	return &m, nil
}
