package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/latency"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Options configure a Stream. Zero fields take the defaults given.
type Options struct {
	// KeepAlive: when nothing was written for this long, KeepAliveFrame is
	// written as an event. 0 = never. The clock starts with the first
	// message event, so that a keep-alive never precedes a protocol's
	// handshake answer.
	KeepAlive time.Duration
	// KeepAliveFrame is the payload of a keep-alive event, e.g. the hub
	// protocol's ping `{"type":6}` + 0x1E.
	KeepAliveFrame []byte
	// WriteTimeout bounds each write; a client that does not take an event
	// within it is dropped. Default 10s.
	WriteTimeout time.Duration
	Logger       *slog.Logger          // default: discard
	Registerer   prometheus.Registerer // default: a private registry
}

// Reasons Serve returns.
const (
	ReasonClosed       = "closed by the server"
	ReasonClientGone   = "client went away"
	ReasonWriteFailed  = "write failed"
	ReasonWriteTimeout = "write timed out"
	ReasonContextDone  = "context done"
)

// closeLabels maps Serve's reasons to the closes_total label.
var closeLabels = map[string]string{
	ReasonClosed:       "closed",
	ReasonClientGone:   "client_gone",
	ReasonWriteFailed:  "write_error",
	ReasonWriteTimeout: "write_timeout",
	ReasonContextDone:  "context_done",
}

// ErrNoFlush is returned by Start when the ResponseWriter cannot flush, so
// events could not reach the client as they happen.
var ErrNoFlush = errors.New("sse: response writer cannot flush")

// maxKeptBuffer is the largest event buffer a stream keeps between events.
const maxKeptBuffer = 64 << 10

// Stream is one open event stream. It implements core.Link.
type Stream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	reqCtx  context.Context
	opts    Options
	metrics *metrics
	log     *slog.Logger
	wake    chan struct{} // one pending wake-up at most

	// mu guards the fields below.
	mu          sync.Mutex
	src         core.Source
	closing     bool
	closeCode   int
	closeReason string

	// Owned by Serve's goroutine.
	items   []core.Item
	payload []byte // head+body of every drained item
	event   []byte // the framed event, when payload has line breaks
}

var _ core.Link = (*Stream)(nil)

// Start answers the GET of an EventSource: Open, then the stream's Start.
func Start(w http.ResponseWriter, r *http.Request, opts Options) (*Stream, error) {
	s, err := Open(w, r, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Open makes the stream of the GET of an EventSource without writing
// anything yet, so that the caller can register it (as a conn's link)
// before the client learns that the stream is open. It fails when w cannot
// flush.
func Open(w http.ResponseWriter, r *http.Request, opts Options) (*Stream, error) {
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if !canFlush(w) {
		return nil, ErrNoFlush
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Stream{
		w:       w,
		rc:      http.NewResponseController(w),
		reqCtx:  r.Context(),
		opts:    opts,
		metrics: m,
		log:     opts.Logger,
		wake:    make(chan struct{}, 1),
	}
	return s, nil
}

// Start sets the event-stream headers, writes status 200 and the comment
// line ":\r\n", and flushes at once; it fails when the preamble cannot be
// written.
func (s *Stream) Start() error {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache,no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Encoding", "identity")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	s.setDeadline()
	s.w.WriteHeader(http.StatusOK)
	_, err := s.w.Write([]byte(":\r\n"))
	if err == nil {
		err = s.rc.Flush()
	}
	s.clearDeadline()
	if err != nil {
		return fmt.Errorf("sse: write preamble: %w", err)
	}
	s.metrics.bytes.Add(3)
	return nil
}

// Bind sets the source of queued messages and wakes the stream.
func (s *Stream) Bind(src core.Source) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
	s.Wake()
}

// Wake implements core.Link: the source has something queued.
func (s *Stream) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close implements core.Link: what is queued is written, then the response
// ends. The first call's code and reason stand.
func (s *Stream) Close(code int, reason string) {
	s.mu.Lock()
	if !s.closing {
		s.closing, s.closeCode, s.closeReason = true, code, reason
	}
	s.mu.Unlock()
	s.Wake()
}

// Serve writes events until the stream ends and returns why: Close was
// called (queued items are written first), the client went away, a write
// failed or timed out, or ctx is done. It runs on the handler's goroutine,
// which must not write to the response meanwhile; the handler returns after
// it to end the response.
func (s *Stream) Serve(ctx context.Context) string {
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()
	reason := s.serve(ctx)
	s.clearDeadline() // for the end of the response and a later request on the connection
	s.metrics.closes.WithLabelValues(closeLabels[reason]).Inc()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.mu.Lock()
		code, closeReason := s.closeCode, s.closeReason
		s.mu.Unlock()
		s.log.LogAttrs(ctx, slog.LevelDebug, "sse stream ended", slog.String("reason", reason),
			slog.Int("close_code", code), slog.String("close_reason", closeReason))
	}
	s.items, s.payload, s.event = nil, nil, nil
	return reason
}

func (s *Stream) serve(ctx context.Context) string {
	var keepAlive <-chan time.Time // nil until the first message event
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ReasonContextDone
		case <-s.reqCtx.Done():
			return ReasonClientGone
		case <-keepAlive:
			s.payload = append(s.payload[:0], s.opts.KeepAliveFrame...)
			if reason := s.writeEvent(); reason != "" {
				return reason
			}
			timer.Reset(s.opts.KeepAlive)
		case <-s.wake:
			s.mu.Lock()
			src, closing := s.src, s.closing
			s.mu.Unlock()
			if src != nil {
				s.items = src.Drain(s, s.items[:0])
				if len(s.items) > 0 {
					s.payload = s.payload[:0]
					var oldest int64 // the Accepted of the oldest send in this event
					for i := range s.items {
						it := &s.items[i]
						s.payload = src.AppendHead(s.payload, it.Seq, it.Body)
						s.payload = append(s.payload, it.Body...)
						it.Body = nil
						if it.Accepted != 0 && (oldest == 0 || it.Accepted < oldest) {
							oldest = it.Accepted
						}
					}
					if reason := s.writeEvent(); reason != "" {
						return reason
					}
					s.metrics.latency.Observe(oldest, time.Now())
					switch {
					case timer != nil:
						timer.Reset(s.opts.KeepAlive)
					case s.opts.KeepAlive > 0:
						timer = time.NewTimer(s.opts.KeepAlive)
						keepAlive = timer.C
					}
				}
			}
			if closing {
				return ReasonClosed
			}
		}
	}
}

// writeEvent writes s.payload as one event and flushes it; it returns a
// reason when the stream must end.
func (s *Stream) writeEvent() string {
	out := appendEvent(s.event[:0], s.payload)
	s.setDeadline()
	n, err := s.w.Write(out)
	if err == nil {
		err = s.rc.Flush()
	}
	s.metrics.bytes.Add(float64(n))
	if cap(out) > maxKeptBuffer {
		out = nil
	}
	if cap(s.payload) > maxKeptBuffer {
		s.payload = nil
	}
	s.event = out[:0]
	if err != nil {
		s.log.LogAttrs(context.Background(), slog.LevelDebug, "sse write failed", slog.Any("err", err))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ReasonWriteTimeout
		}
		return ReasonWriteFailed
	}
	s.metrics.events.Inc()
	return ""
}

// appendEvent appends payload framed as one unnamed event: a "data: " line
// per line of payload (a '\r' before each '\n' is dropped), then an empty
// line.
func appendEvent(dst, payload []byte) []byte {
	for {
		line, rest, found := bytes.Cut(payload, []byte{'\n'})
		if found {
			line = bytes.TrimSuffix(line, []byte{'\r'})
		}
		dst = append(dst, "data: "...)
		dst = append(dst, line...)
		dst = append(dst, '\r', '\n')
		if !found {
			break
		}
		payload = rest
	}
	return append(dst, '\r', '\n')
}

// canFlush reports whether w, or a writer it wraps, can flush (what
// http.ResponseController looks for).
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Flusher, interface{ FlushError() error }:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

func (s *Stream) setDeadline() {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)) // not supported: the server's own timeouts apply
}

func (s *Stream) clearDeadline() {
	_ = s.rc.SetWriteDeadline(time.Time{})
}

type metrics struct {
	streams prometheus.Gauge
	events  prometheus.Counter
	bytes   prometheus.Counter
	closes  *prometheus.CounterVec
	latency *latency.Shard // the delivery latency, shared by the streams
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.streams, err = metricreg.Register(reg, "sse", prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "switchboard", Subsystem: "sse", Name: "streams",
		Help: "Open Server-Sent Events streams."})); err != nil {
		return nil, err
	}
	if m.events, err = metricreg.Register(reg, "sse", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "sse", Name: "events_total",
		Help: "Events written, keep-alives included; one event carries every message drained at once."})); err != nil {
		return nil, err
	}
	if m.bytes, err = metricreg.Register(reg, "sse", prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "sse", Name: "bytes_total",
		Help: "Bytes of events written, framing included."})); err != nil {
		return nil, err
	}
	if m.closes, err = metricreg.Register(reg, "sse", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "sse", Name: "closes_total",
		Help: "Ended streams by reason."}, []string{"reason"})); err != nil {
		return nil, err
	}
	h, err := metricreg.Register(reg, "sse", latency.New())
	if err != nil {
		return nil, err
	}
	m.latency = h.Shared("sse")
	return &m, nil
}
