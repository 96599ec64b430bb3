package longpoll

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/latency"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Options configure a Conn. Zero fields take the defaults given.
type Options struct {
	// PollTimeout is how long a poll is held without data before it is
	// answered 200 with an empty body. Default 90s.
	PollTimeout time.Duration
	// MaxGap: the client is gone when no poll is active for this long.
	// Default 15s.
	MaxGap time.Duration
	// WriteTimeout bounds writing one poll response. Default 10s.
	WriteTimeout time.Duration
	// OnGone is called exactly once, off any lock, when the conn ends for
	// any reason: the gap elapsed, Stop, or Close delivered. It must be set
	// (nil is treated as a no-op).
	OnGone     func(reason string)
	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // default: a private registry
}

// Reasons passed to OnGone besides a Close's own reason.
const (
	ReasonGap     = "long polling client went away"
	ReasonStopped = "client stopped"
	ReasonClosed  = "closed by the server" // a Close with an empty reason
)

// maxKeptBuffer is the largest response buffer a Conn keeps between polls.
const maxKeptBuffer = 64 << 10

// Conn is the server side of one long-polling client across its polls. It
// implements core.Link.
type Conn struct {
	opts    Options
	metrics *metrics
	log     *slog.Logger

	// mu guards the fields below. Lock order: mu → the source's own lock
	// (Drain runs under mu so that two polls never split a batch).
	mu          sync.Mutex
	src         core.Source
	held        *poll // the poll waiting for data, if any
	polled      bool  // the first poll was answered
	active      int   // polls being served
	idleSince   time.Time
	gap         *time.Timer
	closing     bool   // Close was called: deliver the rest, then 204
	closeReason string //
	ended       bool   // OnGone is fired or about to be; every poll gets 204
	items       []core.Item
	buf         []byte // response buffer, lent to one poll at a time
}

// poll is one held GET.
type poll struct {
	wake       chan struct{} // one pending wake-up at most
	superseded bool          // a newer poll took over (guarded by Conn.mu)
}

func (p *poll) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

var _ core.Link = (*Conn)(nil)

// New returns a Conn; its gap timer starts now, so a negotiated conn that
// never polls goes away after MaxGap.
func New(opts Options) *Conn {
	if opts.PollTimeout <= 0 {
		opts.PollTimeout = 90 * time.Second
	}
	if opts.MaxGap <= 0 {
		opts.MaxGap = 15 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.OnGone == nil {
		opts.OnGone = func(string) {}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		opts.Logger.Warn("long polling metrics not registered", slog.Any("err", err))
		m, _ = newMetrics(prometheus.NewRegistry())
	}
	c := &Conn{opts: opts, metrics: m, log: opts.Logger}
	m.conns.Inc()
	c.mu.Lock()
	c.idleSince = time.Now()
	c.gap = time.AfterFunc(opts.MaxGap, c.gapElapsed)
	c.mu.Unlock()
	return c
}

// Bind sets the source of queued messages and wakes a held poll.
func (c *Conn) Bind(src core.Source) {
	c.mu.Lock()
	c.src = src
	if c.held != nil {
		c.held.signal()
	}
	c.mu.Unlock()
}

// Wake implements core.Link: the source has something queued.
func (c *Conn) Wake() {
	c.mu.Lock()
	if c.held != nil {
		c.held.signal()
	}
	c.mu.Unlock()
}

// Close implements core.Link: a held or the next poll gets what is still
// queued; once nothing is left a poll is answered 204 and OnGone fires with
// reason. The first call's reason stands.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.ended {
		return
	}
	if reason == "" {
		reason = ReasonClosed
	}
	c.closing, c.closeReason = true, reason
	if c.held != nil {
		c.held.signal()
	}
}

// Stop is the client's DELETE: the conn ends at once, a held poll is
// answered 204 and OnGone fires with ReasonStopped.
func (c *Conn) Stop() {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.gap.Stop()
	if c.held != nil {
		c.held.signal()
	}
	c.mu.Unlock()
	c.gone(ReasonStopped)
}

// gapElapsed runs on the gap timer: with no poll since MaxGap, the client
// is gone.
func (c *Conn) gapElapsed() {
	c.mu.Lock()
	if c.ended || c.active > 0 {
		c.mu.Unlock()
		return
	}
	if left := c.opts.MaxGap - time.Since(c.idleSince); left > 0 {
		c.gap.Reset(left) // a poll came and went since the timer was set
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.mu.Unlock()
	c.gone(ReasonGap)
}

// gone ends the conn; the caller set ended, so it runs once.
func (c *Conn) gone(reason string) {
	c.metrics.conns.Dec()
	c.log.LogAttrs(context.Background(), slog.LevelDebug, "long polling conn ended", slog.String("reason", reason))
	c.opts.OnGone(reason)
}

// Poll serves one GET poll; the caller has authenticated it. The first poll
// of a conn is answered at once with an empty 200. Later polls are held until
// something is queued (200 with the bytes of everything drained), until
// PollTimeout (empty 200), until a newer poll arrives (204 to this one), or
// until the conn ends (204 once nothing is left to deliver). A poll whose
// client goes away drains nothing: what is queued waits for the next one.
func (c *Conn) Poll(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		c.respond(w, http.StatusNoContent, nil, "closed")
		return
	}
	c.active++
	c.gap.Stop()
	if c.held != nil {
		c.held.superseded = true
		c.held.signal()
		c.held = nil
	}
	first := !c.polled
	c.polled = true
	p := &poll{wake: make(chan struct{}, 1)}
	if !first {
		c.held = p
	}
	c.mu.Unlock()
	defer c.pollDone(p)

	if first {
		// The JS client waits for this answer before it sends its handshake.
		c.respond(w, http.StatusOK, nil, "empty")
		return
	}
	c.hold(w, r, p)
}

// hold waits for something to answer p with.
func (c *Conn) hold(w http.ResponseWriter, r *http.Request, p *poll) {
	ctx := r.Context()
	var timer *time.Timer // started when the poll first has to wait
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		switch {
		case p.superseded:
			c.mu.Unlock()
			c.respond(w, http.StatusNoContent, nil, "superseded")
			return
		case c.ended:
			c.mu.Unlock()
			c.respond(w, http.StatusNoContent, nil, "closed")
			return
		case ctx.Err() != nil:
			c.mu.Unlock()
			c.metrics.polls.WithLabelValues("aborted").Inc()
			return
		}
		if body, oldest, ok := c.takeLocked(); ok {
			c.mu.Unlock()
			if c.respond(w, http.StatusOK, body, "data") == nil && oldest != 0 {
				c.metrics.latency.Observe(oldest, time.Now()) // delivered: a failed answer is not
			}
			c.giveBack(body)
			return
		}
		if c.closing {
			c.ended = true
			reason := c.closeReason
			c.mu.Unlock()
			c.respond(w, http.StatusNoContent, nil, "closed")
			c.gone(reason)
			return
		}
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.opts.PollTimeout)
		}
		select {
		case <-p.wake:
		case <-timer.C:
			c.respond(w, http.StatusOK, nil, "empty")
			return
		case <-ctx.Done():
			c.metrics.polls.WithLabelValues("aborted").Inc()
			return
		}
	}
}

// takeLocked drains the source into the response buffer, which the caller
// then owns until giveBack, with the Accepted of the oldest send in it (0:
// none); ok is false when nothing was queued. c.mu is held.
func (c *Conn) takeLocked() (body []byte, oldest int64, ok bool) {
	if c.src == nil {
		return nil, 0, false
	}
	c.items = c.src.Drain(c, c.items[:0])
	if len(c.items) == 0 {
		return nil, 0, false
	}
	body, c.buf = c.buf[:0], nil
	for i := range c.items {
		it := &c.items[i]
		body = c.src.AppendHead(body, it.Seq, it.Body)
		body = append(body, it.Body...)
		it.Body = nil
		if it.Accepted != 0 && (oldest == 0 || it.Accepted < oldest) {
			oldest = it.Accepted
		}
	}
	return body, oldest, true
}

// giveBack returns a response buffer for the next poll.
func (c *Conn) giveBack(body []byte) {
	if cap(body) > maxKeptBuffer {
		return
	}
	c.mu.Lock()
	if c.buf == nil {
		c.buf = body[:0]
	}
	c.mu.Unlock()
}

// pollDone ends p: the gap timer runs again once no poll is active.
func (c *Conn) pollDone(p *poll) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == p {
		c.held = nil
	}
	c.active--
	if c.active == 0 && !c.ended {
		c.idleSince = time.Now()
		c.gap.Reset(c.opts.MaxGap)
	}
}

// respond writes one poll response and counts it as result; it returns
// the write's error (the client went away).
func (c *Conn) respond(w http.ResponseWriter, status int, body []byte, result string) error {
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")
	if status == http.StatusOK {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout)) // not supported: the server's own timeouts apply
	w.WriteHeader(status)
	var err error
	if len(body) > 0 {
		var n int
		n, err = w.Write(body)
		c.metrics.bytes.Add(float64(n))
	}
	if err == nil {
		err = rc.Flush()
	}
	_ = rc.SetWriteDeadline(time.Time{}) // the connection may carry the next poll
	c.metrics.polls.WithLabelValues(result).Inc()
	if err != nil {
		c.log.LogAttrs(context.Background(), slog.LevelDebug, "long polling response failed",
			slog.String("result", result), slog.Int("bytes", len(body)), slog.Any("err", err))
	}
	return err
}

type metrics struct {
	conns   prometheus.Gauge
	polls   *prometheus.CounterVec
	bytes   prometheus.Counter
	latency *latency.Shard // the delivery latency, shared by the conns
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.conns, err = metricreg.Register(reg, "longpoll", prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "longpoll", Name: "conns",
		Help: "Long-polling connections not yet gone."})); err != nil {
		return nil, err
	}
	if m.polls, err = metricreg.Register(reg, "longpoll", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "longpoll", Name: "polls_total",
		Help: "Answered polls by result: data, empty, superseded, closed; aborted when the client left first."},
		[]string{"result"})); err != nil {
		return nil, err
	}
	if m.bytes, err = metricreg.Register(reg, "longpoll", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "longpoll", Name: "bytes_total",
		Help: "Bytes of poll response bodies written."})); err != nil {
		return nil, err
	}
	h, err := metricreg.Register(reg, "longpoll", latency.New())
	if err != nil {
		return nil, err
	}
	m.latency = h.Shared("longpoll")
	return &m, nil
}
