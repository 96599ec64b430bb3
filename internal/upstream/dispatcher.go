package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/switchboardhq/switchboard/internal/tracing"
)

// Defaults of the queue settings of Config and SignalRConfig left zero.
const (
	DefaultQueueLimit = 100_000
	DefaultWorkers    = 16
)

// defaultRetry is the backoff before each retry of an asynchronous event: 4 attempts.
func defaultRetry() []time.Duration {
	return []time.Duration{1 * time.Second, 3 * time.Second, 5 * time.Second}
}

// checkQueueSettings reports negative queue settings of the config named cfg.
func checkQueueSettings(cfg string, queueLimit, workers int, retry []time.Duration) error {
	if queueLimit < 0 || workers < 0 {
		return fmt.Errorf("upstream: %s.QueueLimit and Workers must not be negative", cfg)
	}
	for _, d := range retry {
		if d < 0 {
			return fmt.Errorf("upstream: %s.Retry: %v is negative", cfg, d)
		}
	}
	return nil
}

// dispatcher is the protocol-neutral half of an upstream client, shared by Client (Web
// PubSub) and SignalRClient: the HTTP client, the bounded queue of asynchronous events
// with the workers that deliver them at least once, in order per connection, retrying
// with backoff, the metrics of every attempt, and the shutdown that flushes the queue.
// The protocol half builds the requests: each queued job carries the function that makes
// one attempt.
type dispatcher struct {
	http         *http.Client
	ownTransport *http.Transport // nil when the caller gave the HTTP client
	retry        []time.Duration
	log          *slog.Logger
	metrics      *metrics
	observer     CallObserver // nil: nobody watches

	// ctx is cancelled by shutdown once the queue is drained (or shutdown's context is
	// done); it aborts asynchronous deliveries and whatever the protocol half ties to it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // workers, and goroutines the protocol half adds
	// closing is set when shutdown starts: new events and calls are refused.
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	q queue
}

// dispatcherConfig configures a dispatcher. Zero values take the package defaults.
type dispatcherConfig struct {
	httpClient *http.Client
	queueLimit int
	workers    int
	retry      []time.Duration // nil: defaultRetry; empty: no retries
	log        *slog.Logger    // not nil
	metrics    *metrics        // not nil
	observer   CallObserver    // nil: none
}

// CallObserver is told of every attempt to call an event handler (the
// dashboard's live trace): the request (its URL, and the ce-* or X-ASRS-*
// headers that name the hub, connection and user), the event kind, the
// reply's status (0 when there is none, with err) and the time it took. It
// is called on the attempt's goroutine and must return quickly.
type CallObserver interface {
	Called(req *http.Request, kind string, status int, took time.Duration, err error)
}

// newDispatcher returns a dispatcher and starts its workers; shutdown stops them.
func newDispatcher(cfg dispatcherConfig) *dispatcher {
	if cfg.queueLimit == 0 {
		cfg.queueLimit = DefaultQueueLimit
	}
	if cfg.workers == 0 {
		cfg.workers = DefaultWorkers
	}
	if cfg.retry == nil {
		cfg.retry = defaultRetry()
	}
	d := &dispatcher{
		http:     cfg.httpClient,
		retry:    append([]time.Duration(nil), cfg.retry...),
		log:      cfg.log,
		metrics:  cfg.metrics,
		observer: cfg.observer,
	}
	if d.http == nil {
		d.ownTransport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
		d.http = &http.Client{
			Transport: d.ownTransport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.q.init(cfg.queueLimit, cfg.metrics.queued)
	d.wg.Add(cfg.workers)
	for range cfg.workers {
		go d.work()
	}
	return d
}

// shutdown stops taking events, waits until the queue is drained or ctx is done, calls
// stop (the protocol half refuses to start more goroutines), then aborts what is in
// flight and waits for every goroutine counted in wg. Events still queued are dropped and
// counted. It returns ctx.Err() if ctx ended first; later calls return the first result.
func (d *dispatcher) shutdown(ctx context.Context, stop func()) error {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		drained := d.q.close()
		select {
		case <-drained:
		default:
			select {
			case <-drained:
			case <-ctx.Done():
				d.closeErr = ctx.Err()
			}
		}
		if stop != nil {
			stop()
		}
		d.cancel()
		d.wg.Wait()
		for kind, n := range d.q.discard() {
			d.metrics.dropped.WithLabelValues(kind, dropClosed).Add(float64(n))
		}
		if d.ownTransport != nil {
			d.ownTransport.CloseIdleConnections()
		}
	})
	return d.closeErr
}

// job is one asynchronous event. attempt makes one delivery attempt (building the
// request afresh, so that it can be repeated) and returns the reply or an error wrapping
// ErrUnavailable (retried), ErrRefused or errUnsendable (dropped), ErrBadResponse
// (delivered: the reply does not matter) or ErrClosed.
type job struct {
	kind     string // metrics label
	event    string // event name, for logs
	hub      string
	connID   string
	attempt  func(ctx context.Context) (*reply, error)
	attempts int // made so far
}

// connKey is the queue key of a connection: its events are delivered in order.
func connKey(hub, connID string) string {
	return strings.ToLower(hub) + "\x00" + connID
}

// enqueue queues j behind the earlier events of connection key. It never blocks; when
// the queue is full or closing, j is dropped and counted.
func (d *dispatcher) enqueue(key string, j *job) {
	drop, startsOverflow := d.q.push(key, j)
	if drop == "" {
		return
	}
	d.metrics.dropped.WithLabelValues(j.kind, drop).Inc()
	if startsOverflow {
		d.log.Warn("webhook queue full; dropping asynchronous events until it drains",
			"limit", d.q.limit)
	}
}

// work delivers queued events until the dispatcher's context is cancelled.
func (d *dispatcher) work() {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for d.ctx.Err() == nil {
		ch, j, wait := d.q.next(time.Now())
		if ch != nil {
			d.deliver(ch, j)
			continue
		}
		var fire <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-d.ctx.Done():
		case <-d.q.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

// deliver makes one attempt at the head job j of ch and settles it: done, dropped, or
// scheduled for a retry.
func (d *dispatcher) deliver(ch *chain, j *job) {
	r, err := j.attempt(d.ctx)
	j.attempts++
	if d.ctx.Err() != nil || errors.Is(err, ErrClosed) {
		// shutdown gave up waiting: leave the job for it to count.
		d.q.park(ch)
		return
	}
	retry := false
	switch {
	case err == nil && r.ok(), errors.Is(err, ErrBadResponse):
		// Delivered; the reply's body does not matter.
	case err == nil && retryableStatus(r.status):
		retry = true
	case err == nil:
		d.log.Warn("webhook rejected event", "event", j.event, "hub", j.hub,
			"conn_id", j.connID, "status", r.status, "reason", reason(r.body))
	case errors.Is(err, ErrRefused):
		d.drop(j, dropRefused, err)
	case errors.Is(err, errUnsendable):
		d.drop(j, dropInvalid, err)
	default:
		retry = true
	}
	if retry {
		if j.attempts <= len(d.retry) {
			d.metrics.retries.WithLabelValues(j.kind).Inc()
			d.q.retry(ch, time.Now().Add(d.retry[j.attempts-1]))
			return
		}
		if err == nil {
			err = &RejectError{Status: r.status, Reason: reason(r.body)}
		}
		d.drop(j, dropRetries, err)
	}
	d.q.finish(ch)
}

func (d *dispatcher) drop(j *job, why string, err error) {
	d.metrics.dropped.WithLabelValues(j.kind, why).Inc()
	d.log.Warn("event not delivered to webhook", "event", j.event, "hub", j.hub,
		"conn_id", j.connID, "attempts", j.attempts, "reason", why, "url", HandlerURL(err), "err", err)
}

// retryableStatus reports whether an asynchronous event answered with status is retried.
func retryableStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// errUnsendable marks an event that cannot be sent (a value that is not a valid header
// value, a URL that does not parse); retrying does not help.
var errUnsendable = errors.New("event cannot be sent")

// reply is a webhook's answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *reply) ok() bool { return r.status >= 200 && r.status < 300 }

// exchange sends req and reads at most limit+1 bytes of the reply (so that the caller can
// tell an oversized body), counting the attempt and its duration by event kind and status.
// The error is the HTTP client's, with the URL's query redacted.
func (d *dispatcher) exchange(kind string, req *http.Request, limit int64) (*reply, error) {
	var span trace.Span
	if tracing.Enabled() {
		req, span = traceRequest(kind, req)
	}
	start := time.Now()
	r, err := d.do(req, limit)
	if span != nil {
		endRequestSpan(span, r, err)
	}
	took := time.Since(start)
	d.metrics.duration.WithLabelValues(kind).Observe(took.Seconds())
	if d.observer != nil {
		status := 0
		if r != nil {
			status = r.status
		}
		d.observer.Called(req, kind, status, took, err)
	}
	if err != nil {
		d.metrics.requests.WithLabelValues(kind, "error").Inc()
		return nil, err
	}
	d.metrics.requests.WithLabelValues(kind, strconv.Itoa(r.status)).Inc()
	return r, nil
}

// do sends req and reads at most limit+1 bytes of the reply.
func (d *dispatcher) do(req *http.Request, limit int64) (*reply, error) {
	resp, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact(req.URL) // the query may hold a secret
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if len(body) == 0 {
		body = nil
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// redact returns u without query, fragment or user info, for errors and logs.
func redact(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}
