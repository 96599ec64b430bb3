package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// failingListener fails its first n accepts with err, then hands out one end of a pipe.
type failingListener struct {
	n      atomic.Int64
	err    error
	closed chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	c, _ := net.Pipe()
	return c, nil
}
func (l *failingListener) Close() error   { close(l.closed); return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

type count struct{ n atomic.Int64 }

func (c *count) Inc() { c.n.Add(1) }

// TestRetryOutOfDescriptors: EMFILE (and the other shortages) are waited out, each
// counted, with waits that double from 5 ms to at most 1 s; a plain net/http or front
// door loop would return the error and stop serving.
func TestRetryOutOfDescriptors(t *testing.T) {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS} {
		t.Run(e.Error(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fl := &failingListener{err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", e)}, closed: make(chan struct{})}
				fl.n.Store(12)
				var retried count
				ln := Retry(fl, &retried, nil)
				start := time.Now()
				c, err := ln.Accept()
				if err != nil {
					t.Fatalf("Accept returned %v, want a connection after the errors", err)
				}
				c.Close()
				if got := retried.n.Load(); got != 12 {
					t.Errorf("retried %d errors, want 12", got)
				}
				// 5+10+…+640 ms, then 1 s for each of the 5 left: the fake clock says
				// exactly what was waited.
				want := time.Duration(0)
				for i, w := 0, firstBackoff; i < 12; i, w = i+1, min(2*w, maxBackoff) {
					want += w
				}
				if got := time.Since(start); got != want {
					t.Errorf("waited %s in all, want %s", got, want)
				}
			})
		})
	}
}

// TestRetryStopsOnClose: a closed listener's error ends Accept, and Close ends a wait.
func TestRetryStopsOnClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fl := &failingListener{err: fmt.Errorf("accept: %w", syscall.EMFILE), closed: make(chan struct{})}
		fl.n.Store(1 << 30)
		ln := Retry(fl, nil, nil)
		errc := make(chan error, 1)
		go func() { _, err := ln.Accept(); errc <- err }()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		ln.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close returned %v, want net.ErrClosed", err)
		}
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept on a closed listener returned %v", err)
		}
	})
}

func TestTemporary(t *testing.T) {
	for err, want := range map[error]bool{
		net.ErrClosed:                                 false,
		fmt.Errorf("x: %w", syscall.EMFILE):           true,
		fmt.Errorf("x: %w", syscall.EINVAL):           false,
		os.NewSyscallError("accept4", syscall.ENFILE): true,
	} {
		if got := Temporary(err); got != want {
			t.Errorf("Temporary(%v) = %v, want %v", err, got, want)
		}
	}
}
