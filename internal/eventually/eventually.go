// Package eventually waits in tests for a condition that another goroutine makes true. It is
// for "it never happened" failures only: the timeout is a bound on waiting, never the thing a
// test measures (timing logic belongs in testing/synctest).
package eventually

import (
	"fmt"
	"testing"
	"time"
)

// True polls cond until it holds, and fails the test (t.Fatalf, so call it from the test's own
// goroutine) when it still does not after timeout; what names the awaited event in the failure.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	Nil(t, timeout, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("waiting for %s", what)
	})
}

// Nil polls check until it returns nil, and fails the test with check's last error when it
// still has not after timeout: for waits whose failure should say what was left (goroutines,
// open files, the last answer). check runs on the caller's goroutine and may fail the test.
func Nil(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %v", timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
