package listener

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Backoff bounds of Accept after a temporary error: the first wait, doubled on each
// error in a row up to the last. They are net/http's.
const (
	firstBackoff = 5 * time.Millisecond
	maxBackoff   = time.Second
	logEvery     = 10 * time.Second // at most one log line per this, with the count since
)

// Counter counts accept errors that were retried (a prometheus.Counter).
type Counter interface{ Inc() }

// Retrying is a listener whose Accept waits and tries again after a temporary error
// (EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, a timeout…) instead of returning it:
// a server whose accept loop returned such an error would stop serving for good, and
// one that retried at once would spin. Waits start at 5 ms and double up to 1 s while
// the errors continue. Each retried error is counted; they are logged at most once per
// 10 s. Close ends a wait at once.
type Retrying struct {
	net.Listener
	errors Counter
	log    *slog.Logger

	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex // guards the log state below
	lastLog  time.Time
	unlogged int
}

// Retry wraps ln; retried counts the retried accept errors (nil: not counted), log
// reports them (nil: not logged).
func Retry(ln net.Listener, retried Counter, log *slog.Logger) *Retrying {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retrying{Listener: ln, errors: retried, log: log, done: make(chan struct{})}
}

// Accept returns the next connection, waiting out temporary errors. It returns the
// listener's error when it is closed or fails for good.
func (l *Retrying) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return c, nil
		}
		if !Temporary(err) {
			return nil, err
		}
		select {
		case <-l.done:
			return nil, err
		default:
		}
		if wait == 0 {
			wait = firstBackoff
		} else {
			wait = min(2*wait, maxBackoff)
		}
		if l.errors != nil {
			l.errors.Inc()
		}
		l.report(err, wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// report logs err, or counts it for the next log line when one was written less than
// logEvery ago.
func (l *Retrying) report(err error, wait time.Duration) {
	l.mu.Lock()
	now := time.Now()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < logEvery {
		l.unlogged++
		l.mu.Unlock()
		return
	}
	n := l.unlogged
	l.lastLog, l.unlogged = now, 0
	l.mu.Unlock()
	msg := "accept failed; retrying"
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		msg = "accept failed at the open-file limit; retrying (raise ulimit -n, or lower limits.max_connections)"
	}
	l.log.Warn(msg, "addr", l.Addr().String(), "err", err, "retry_in", wait, "errors_not_logged", n)
}

// Close closes the listener and ends a wait of Accept.
func (l *Retrying) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Temporary reports whether an accept error may pass: a timeout, or a resource
// shortage or aborted connection that a later accept may not meet.
func Temporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
