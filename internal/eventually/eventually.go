// Package eventually waits in tests for a condition that another goroutine makes true. It is
// for "it never happened" failures only: the timeout is a bound on waiting, never the thing a
// test measures (timing logic belongs in testing/synctest).
package eventually

import (
	"testing"
	"time"
)

// True polls cond until it holds, and fails the test (t.Fatalf, so call it from the test's own
// goroutine) when it still does not after timeout; what names the awaited event in the failure.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
