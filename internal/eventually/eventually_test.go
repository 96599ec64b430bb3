package eventually

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// fakeTB records a failure and ends its goroutine, as t.Fatalf does.
type fakeTB struct {
	testing.TB
	failure string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls wait with a fakeTB on a goroutine of its own and returns its failure ("" for
// none) and how long it took on the bubble's clock.
func run(wait func(testing.TB)) (string, time.Duration) {
	tb := &fakeTB{}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait(tb)
	}()
	<-done
	return tb.failure, time.Since(start)
}

func TestTrueReturnsOnceTheConditionHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flip := time.Now().Add(time.Second)
		failure, took := run(func(tb testing.TB) {
			True(tb, "the flip", time.Minute, func() bool { return !time.Now().Before(flip) })
		})
		if failure != "" || took < time.Second || took > time.Second+10*time.Millisecond {
			t.Fatalf("failure %q after %v, want none soon after 1s", failure, took)
		}
	})
}

func TestTrueFailsNamingWhatAfterTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		failure, took := run(func(tb testing.TB) { True(tb, "the flip", time.Minute, func() bool { return false }) })
		if !strings.Contains(failure, "waiting for the flip") || took < time.Minute {
			t.Fatalf("failure %q after %v, want one naming the flip after 1m", failure, took)
		}
	})
}

func TestNilFailsWithTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		failure, _ := run(func(tb testing.TB) {
			Nil(tb, time.Second, func() error { n++; return fmt.Errorf("%d left", n) })
		})
		if want := fmt.Sprintf("%d left", n); n < 2 || !strings.HasSuffix(failure, want) {
			t.Fatalf("failure %q after %d checks, want the last error %q", failure, n, want)
		}
		failure, _ = run(func(tb testing.TB) { Nil(tb, time.Second, func() error { return nil }) })
		if failure != "" {
			t.Fatalf("failure %q for a check that passed", failure)
		}
	})
}
