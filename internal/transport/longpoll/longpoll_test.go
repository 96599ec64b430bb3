package longpoll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func checkNoCache(t *testing.T, a answer) {
	t.Helper()
	for k, want := range map[string]string{
		"Cache-Control": "no-cache, no-store",
		"Pragma":        "no-cache",
		"Expires":       "Thu, 01 Jan 1970 00:00:00 GMT",
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("status %d: %s = %q, want %q", a.status, k, got, want)
		}
	}
}

func TestFirstPollAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	deliver(e.conn, "queued\x1e") // waits for the second poll
	a := e.mustPoll(t, http.StatusOK)
	if a.body != "" || a.length != 0 || a.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("first poll: body %q, Content-Length %d, Content-Type %q; want empty octet-stream", a.body, a.length, a.header.Get("Content-Type"))
	}
	checkNoCache(t, a)
	a = e.mustPoll(t, http.StatusOK)
	if a.body != "queued\x1e" || a.header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("second poll: %q (%s), want the queued message", a.body, a.header.Get("Content-Type"))
	}
	checkNoCache(t, a)
}

func TestHeldPollGetsData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	ch := e.pollAsync(context.Background())
	eventually.True(t, "a held poll", 10*time.Second, e.isHeld)
	deliver(e.conn, "hello\x1e")
	if a := wait(t, ch); a.status != http.StatusOK || a.body != "hello\x1e" {
		t.Errorf("held poll: %d %q", a.status, a.body)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_longpoll_bytes_total"); v != 6 {
		t.Errorf("bytes_total = %v, want 6", v)
	}
}

func TestSeveralItemsOneResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	deliver(e.conn, "a\x1e", "b\x1e", "c\x1e")
	if a := e.mustPoll(t, http.StatusOK); a.body != "a\x1eb\x1ec\x1e" {
		t.Errorf("body %q, want all three", a.body)
	}
}

func TestPollTimeoutAnswersEmpty(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testPollTimeoutAnswersEmpty)
}

func testPollTimeoutAnswersEmpty(t *testing.T) {
	const timeout = 20 * time.Second // on the bubble's clock
	e := newBubbleEnv(t, Options{PollTimeout: timeout})
	e.mustPoll(t, http.StatusOK)
	start := time.Now()
	a := e.mustPoll(t, http.StatusOK)
	if a.body != "" {
		t.Errorf("timed-out poll body %q", a.body)
	}
	if held := time.Since(start); held != timeout {
		t.Errorf("poll held %v, want PollTimeout %v", held, timeout)
	}
	checkNoCache(t, a)
	deliver(e.conn, "later\x1e") // the conn lives on
	if a := e.mustPoll(t, http.StatusOK); a.body != "later\x1e" {
		t.Errorf("next poll %q", a.body)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_longpoll_polls_total", "result", "empty"); v != 2 {
		t.Errorf("polls_total{empty} = %v, want 2", v)
	}
}

func TestNewerPollSupersedes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	older := e.pollAsync(context.Background())
	eventually.True(t, "the older poll held", 10*time.Second, e.isHeld)
	newer := e.pollAsync(context.Background())
	a := wait(t, older)
	if a.status != http.StatusNoContent {
		t.Fatalf("older poll: %d %q, want 204", a.status, a.body)
	}
	checkNoCache(t, a)
	eventually.True(t, "the newer poll held", 10*time.Second, e.isHeld)
	deliver(e.conn, "x\x1e")
	if a := wait(t, newer); a.status != http.StatusOK || a.body != "x\x1e" {
		t.Errorf("newer poll: %d %q", a.status, a.body)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_longpoll_polls_total", "result", "superseded"); v != 1 {
		t.Errorf("polls_total{superseded} = %v", v)
	}
	if got := e.goneReasons(); len(got) != 0 {
		t.Errorf("OnGone called: %q", got)
	}
}

func TestCloseDeliversRestThenEnds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testCloseDeliversRestThenEnds)
}

func testCloseDeliversRestThenEnds(t *testing.T) {
	e := newBubbleEnv(t, Options{MaxGap: time.Second})
	e.mustPoll(t, http.StatusOK)
	deliver(e.conn, "last\x1e")
	e.conn.Close("shutting down") // queues the notice, then closes the link
	if a := e.mustPoll(t, http.StatusOK); a.body != "last\x1ebye:shutting down" {
		t.Errorf("poll after Close: %q, want what was queued", a.body)
	}
	if got := e.goneReasons(); len(got) != 0 {
		t.Errorf("OnGone before the 204: %q", got)
	}
	a := e.mustPoll(t, http.StatusNoContent)
	checkNoCache(t, a)
	if got := e.waitGone(t); len(got) != 1 || got[0] != "shutting down" {
		t.Errorf("OnGone reasons %q, want once \"shutting down\"", got)
	}
	e.mustPoll(t, http.StatusNoContent) // an ended conn answers every poll 204
	e.lp.Stop()
	e.lp.Close(1000, "again")
	time.Sleep(2200 * time.Millisecond) // the bubble's clock: a stray gap timer (1s) would have fired, twice
	synctest.Wait()
	if got := e.goneReasons(); len(got) != 1 {
		t.Errorf("OnGone called %d times: %q", len(got), got)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_longpoll_conns"); v != 0 {
		t.Errorf("conns gauge %v, want 0", v)
	}
}

func TestCloseAnswersHeldPoll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	ch := e.pollAsync(context.Background())
	eventually.True(t, "a held poll", 10*time.Second, e.isHeld)
	e.lp.Close(1008, "")
	if a := wait(t, ch); a.status != http.StatusNoContent {
		t.Errorf("held poll after Close: %d %q, want 204", a.status, a.body)
	}
	if got := e.waitGone(t); len(got) != 1 || got[0] != ReasonClosed {
		t.Errorf("OnGone %q", got)
	}
}

func TestStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	ch := e.pollAsync(context.Background())
	eventually.True(t, "a held poll", 10*time.Second, e.isHeld)
	deliver(e.conn) // nothing
	if code := e.del(t); code != http.StatusAccepted {
		t.Errorf("DELETE: %d", code)
	}
	if a := wait(t, ch); a.status != http.StatusNoContent {
		t.Errorf("held poll after Stop: %d %q, want 204", a.status, a.body)
	}
	if got := e.waitGone(t); len(got) != 1 || got[0] != ReasonStopped {
		t.Errorf("OnGone %q, want once %q", got, ReasonStopped)
	}
	eventually.True(t, "the core conn to end with its stopped transport", 10*time.Second, e.conn.Ended)
	e.mustPoll(t, http.StatusNoContent)
	if got := e.goneReasons(); len(got) != 1 {
		t.Errorf("OnGone called %d times", len(got))
	}
}

func TestGapEndsConn(t *testing.T) {
	t.Parallel()
	t.Run("never polled", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Options{MaxGap: time.Second})
			e.expectGapIn(t, time.Second)
			if !e.conn.Ended() {
				t.Error("the core conn outlives its gap")
			}
		})
	})
	t.Run("stopped polling", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			e := newBubbleEnv(t, Options{MaxGap: time.Second})
			time.Sleep(time.Second / 2)
			e.mustPoll(t, http.StatusOK) // the gap counts from the end of the last poll
			e.expectGapIn(t, time.Second)
			e.mustPoll(t, http.StatusNoContent)
		})
	})
}

// TestHeldPollIsNotAGap: a poll held far longer than MaxGap keeps the conn.
func TestHeldPollIsNotAGap(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, Options{MaxGap: time.Second, PollTimeout: 3 * time.Second})
		e.mustPoll(t, http.StatusOK)
		if a := e.mustPoll(t, http.StatusOK); a.body != "" { // held for 3s, MaxGap three times
			t.Fatalf("held poll: %q", a.body)
		}
		if got := e.goneReasons(); len(got) != 0 {
			t.Fatalf("OnGone %q while a poll was held", got)
		}
	})
}

// TestAbortedPollKeepsItems: a client that gives up on a held poll loses
// nothing; what is queued afterwards goes to the next poll.
func TestAbortedPollKeepsItems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	ctx, cancel := context.WithCancel(context.Background())
	ch := e.pollAsync(ctx)
	eventually.True(t, "a held poll", 10*time.Second, e.isHeld)
	cancel()
	<-ch
	eventually.True(t, "the server to see the abort", 10*time.Second, func() bool {
		return metrictest.Value(t, e.reg, "switchboard_longpoll_polls_total", "result", "aborted") == 1
	})
	deliver(e.conn, "kept\x1e")
	if a := e.mustPoll(t, http.StatusOK); a.body != "kept\x1e" {
		t.Errorf("next poll %q, want the item queued after the abort", a.body)
	}
}

// TestConcurrentWakes delivers from many goroutines (and wakes the link
// directly) while the client polls; every message arrives once, in each
// sender's order.
func TestConcurrentWakes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{PollTimeout: 50 * time.Millisecond})
	e.mustPoll(t, http.StatusOK)
	const senders, each = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				deliver(e.conn, fmt.Sprintf("%d:%d\x1e", g, i))
				e.lp.Wake()
			}
		}()
	}
	next := make([]int, senders)
	got := 0
	deadline := time.Now().Add(20 * time.Second)
	for got < senders*each {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages", got, senders*each)
		}
		a := e.mustPoll(t, http.StatusOK)
		for _, rec := range strings.Split(a.body, "\x1e") {
			if rec == "" {
				continue
			}
			var g, i int
			if _, err := fmt.Sscanf(rec, "%d:%d", &g, &i); err != nil {
				t.Fatalf("bad record %q", rec)
			}
			if i != next[g] {
				t.Fatalf("sender %d: got %d, want %d", g, i, next[g])
			}
			next[g]++
			got++
		}
	}
	wg.Wait()
}

// A poll answered with sends is one observation of the delivery latency,
// from the oldest send's acceptance; one without sends (Accepted 0) is none.
func TestDeliveryLatencyObservedPerResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.mustPoll(t, http.StatusOK)
	e.conn.Deliver(&core.Message{Data: []byte("reply")})
	e.mustPoll(t, http.StatusOK)
	if n, _ := metrictest.Histogram(t, e.reg, "switchboard_delivery_latency_seconds", "transport", "longpoll"); n != 0 {
		t.Fatalf("a response without sends was observed (%d)", n)
	}
	accepted := time.Now().Add(-300 * time.Millisecond).UnixNano()
	e.conn.Deliver(&core.Message{Data: []byte("newer"), Accepted: accepted + int64(200*time.Millisecond)})
	e.conn.Deliver(&core.Message{Data: []byte("older"), Accepted: accepted})
	e.mustPoll(t, http.StatusOK)
	n, sum := metrictest.Histogram(t, e.reg, "switchboard_delivery_latency_seconds", "transport", "longpoll")
	if n != 1 || sum < 0.3 || sum > 60 {
		t.Errorf("latency count %d, sum %v s: want one observation of the oldest send (at least 0.3 s)", n, sum)
	}
}

// failingWriter is a poll's response whose body cannot be written (the
// client went away).
type failingWriter struct{ *httptest.ResponseRecorder }

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// A response that could not be written delivered nothing: its sends are
// not observed (as a failed WebSocket write, or SSE event).
func TestDeliveryLatencyNotObservedForAFailedResponse(t *testing.T) {
	t.Parallel()
	e := newBubbleEnv(t, Options{})
	e.lp.Poll(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) // the first poll answers at once
	e.conn.Deliver(&core.Message{Data: []byte("lost"), Accepted: time.Now().UnixNano()})
	e.lp.Poll(failingWriter{httptest.NewRecorder()}, httptest.NewRequest(http.MethodGet, "/", nil))
	if n, _ := metrictest.Histogram(t, e.reg, "switchboard_delivery_latency_seconds", "transport", "longpoll"); n != 0 {
		t.Fatalf("a response that failed was observed (%d)", n)
	}
}
