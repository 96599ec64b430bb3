package sse

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, payload, want string
	}{
		{"single line", `{"type":1}` + "\x1e", "data: {\"type\":1}\x1e\r\n\r\n"},
		{"empty", "", "data: \r\n\r\n"},
		{"lf", "a\nb", "data: a\r\ndata: b\r\n\r\n"},
		{"crlf drops the cr", "a\r\nb\r\nc", "data: a\r\ndata: b\r\ndata: c\r\n\r\n"},
		{"trailing lf keeps an empty line", "a\n", "data: a\r\ndata: \r\n\r\n"},
		{"blank lines", "\n\n", "data: \r\ndata: \r\ndata: \r\n\r\n"},
		{"cr without lf is kept", "a\rb", "data: a\rb\r\n\r\n"},
		{"leading space kept", " x", "data:  x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendEvent(nil, []byte(tc.payload))); got != tc.want {
				t.Errorf("appendEvent(%q) = %q, want %q", tc.payload, got, tc.want)
			}
		})
	}
}

// parseEvent decodes one event as an EventSource does (lines end with CR,
// LF or CRLF; "data" lines join with LF; one space after the colon goes).
func parseEvent(raw []byte) (data string, events int) {
	var buf []string
	for len(raw) > 0 {
		i := bytes.IndexAny(raw, "\r\n")
		if i < 0 {
			break // an unterminated line is not part of an event
		}
		line := string(raw[:i])
		if raw[i] == '\r' && i+1 < len(raw) && raw[i+1] == '\n' {
			i++
		}
		raw = raw[i+1:]
		switch {
		case line == "":
			if buf != nil {
				data, events = strings.Join(buf, "\n"), events+1
			}
			buf = nil
		case strings.HasPrefix(line, "data:"):
			buf = append(buf, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return data, events
}

// FuzzAppendEvent checks that an EventSource gets back exactly the payload,
// as one event, for any payload without a carriage return.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range []string{"", "x", `{"type":1,"target":"a"}` + "\x1e", "a\nb", "\n", "\n\n\n", " a\n b", "data: x\n\nid: 3"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		if bytes.IndexByte(payload, '\r') >= 0 {
			payload = bytes.ReplaceAll(payload, []byte{'\r'}, nil)
		}
		ev := appendEvent(nil, payload)
		data, n := parseEvent(ev)
		if n != 1 || data != string(payload) {
			t.Fatalf("payload %q framed as %q parses to %d events, last %q", payload, ev, n, data)
		}
	})
}

func TestPreambleAndHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	c, p := e.open(t)
	if c.resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", c.resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache,no-store",
		"Pragma":            "no-cache",
		"Content-Encoding":  "identity",
		"X-Accel-Buffering": "no",
	} {
		if got := c.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The comment line arrives before any message is queued.
	line, err := c.br.ReadString('\n')
	if err != nil || line != ":\r\n" {
		t.Fatalf("first line %q (%v), want \":\\r\\n\"", line, err)
	}
	deliver(p.conn, `{"type":1}`+"\x1e")
	if got, want := c.readEvent(t), "data: {\"type\":1}\x1e\r\n\r\n"; got != want {
		t.Errorf("event %q, want %q", got, want)
	}
}

type noFlushWriter struct{ w http.ResponseWriter }

func (n noFlushWriter) Header() http.Header         { return n.w.Header() }
func (n noFlushWriter) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noFlushWriter) WriteHeader(code int)        { n.w.WriteHeader(code) }

func TestStartNeedsFlush(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/client/", nil)
	rec := httptest.NewRecorder()
	if _, err := Start(noFlushWriter{rec}, r, Options{}); !errors.Is(err, ErrNoFlush) {
		t.Errorf("Start on a writer without Flush: %v, want ErrNoFlush", err)
	}
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("Start without Flush touched the response (%d, %q, %v): the caller can no longer answer the error", rec.Code, rec.Body.String(), rec.Header())
	}
	rec = httptest.NewRecorder()
	if s, err := Start(rec, r, Options{}); err != nil || s == nil || rec.Body.String() != ":\r\n" || !rec.Flushed {
		t.Errorf("Start on a recorder: %v, body %q flushed %v", err, rec.Body.String(), rec.Flushed)
	}
}

func TestMultiLinePayload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	c, p := e.open(t)
	c.br.ReadString('\n') // preamble
	deliver(p.conn, "line1\r\nline2\nline3")
	if got, want := c.readEvent(t), "data: line1\r\ndata: line2\r\ndata: line3\r\n\r\n"; got != want {
		t.Errorf("event %q, want %q", got, want)
	}
}

func TestSeveralItemsOneEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	// Queued before Serve runs: one wake drains them all into one event.
	e.prepare = func(p *peer) { deliver(p.conn, "a\x1e", "b\x1e", "c\x1e") }
	c, _ := e.open(t)
	if got, want := c.readEvent(t), ":\r\ndata: a\x1eb\x1ec\x1e\r\n\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	eventually.True(t, "events_total 1", 10*time.Second, func() bool { return metrictest.Value(t, e.reg, "switchboard_sse_events_total") == 1 })
}

func TestHeadsBeforeBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, true)
	e.prepare = func(p *peer) {
		p.fake.push(p.stream, core.Item{Body: []byte("x"), Seq: 1}, core.Item{Body: []byte("ctl")}, core.Item{Body: []byte("y"), Seq: 2})
	}
	c, _ := e.open(t)
	if got, want := c.readEvent(t), ":\r\ndata: #1|xctl#2|y\r\n\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, testKeepAlive)
}

func testKeepAlive(t *testing.T) {
	ping := `{"type":6}` + "\x1e"
	e := newBubbleEnv(t, Options{KeepAlive: 5 * time.Millisecond, KeepAliveFrame: []byte(ping)}, false)
	c, p := e.open(t)
	c.br.ReadString('\n') // preamble
	// No keep-alive before the first message (a handshake answer must come
	// first), however long the stream waits.
	time.Sleep(time.Hour) // the bubble's clock
	synctest.Wait()
	deliver(p.conn, "handshake\x1e")
	if got, want := c.readEvent(t), "data: handshake\x1e\r\n\r\n"; got != want {
		t.Fatalf("first event %q, want %q", got, want)
	}
	for i := 0; i < 3; i++ {
		if got, want := c.readEvent(t), "data: "+ping+"\r\n\r\n"; got != want {
			t.Fatalf("keep-alive %d: %q, want %q", i, got, want)
		}
	}
	deliver(p.conn, "m\x1e") // messages still flow between keep-alives
	for {
		got := c.readEvent(t)
		if got == "data: m\x1e\r\n\r\n" {
			break
		}
		if got != "data: "+ping+"\r\n\r\n" {
			t.Fatalf("unexpected event %q", got)
		}
	}
}

func TestCloseWritesQueuedThenEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	e.prepare = func(p *peer) {
		deliver(p.conn, "one\x1e", "two\x1e")
		p.conn.Close("server says bye") // queues "bye:…", then closes the link
	}
	c, p := e.open(t)
	rest := c.expectEnd(t)
	if want := ":\r\ndata: one\x1etwo\x1ebye:server says bye\r\n\r\n"; rest != want {
		t.Errorf("stream %q, want %q", rest, want)
	}
	if r := p.waitEnded(t); r != ReasonClosed {
		t.Errorf("Serve returned %q, want %q", r, ReasonClosed)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_sse_closes_total", "reason", "closed"); v != 1 {
		t.Errorf("closes_total{closed} = %v, want 1", v)
	}
	if v := metrictest.Value(t, e.reg, "switchboard_sse_bytes_total"); v != float64(len(rest)) {
		t.Errorf("bytes_total = %v, want %d", v, len(rest))
	}
	eventually.True(t, "streams gauge back to 0", 10*time.Second, func() bool { return metrictest.Value(t, e.reg, "switchboard_sse_streams") == 0 })
}

func TestCloseWhileServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, true)
	c, p := e.open(t)
	c.br.ReadString('\n')
	p.fake.push(p.stream, core.Item{Body: []byte("last")})
	p.stream.Close(1000, "done")
	p.stream.Close(1011, "again") // a second Close is harmless
	if rest := c.expectEnd(t); rest != "data: last\r\n\r\n" {
		t.Errorf("after Close: %q", rest)
	}
	if r := p.waitEnded(t); r != ReasonClosed {
		t.Errorf("Serve returned %q", r)
	}
}

func TestClientGoneEndsServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	c, p := e.open(t)
	c.br.ReadString('\n')
	c.cancel()
	if r := p.waitEnded(t); r != ReasonClientGone {
		t.Errorf("Serve returned %q, want %q", r, ReasonClientGone)
	}
	if !p.conn.Ended() {
		t.Error("the core conn did not end after its stream did")
	}
	if v := metrictest.Value(t, e.reg, "switchboard_sse_closes_total", "reason", "client_gone"); v != 1 {
		t.Errorf("closes_total{client_gone} = %v", v)
	}
}

func TestContextEndsServe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, true)
	ctx, cancel := context.WithCancel(context.Background())
	e.serveCtx = ctx
	c, p := e.open(t)
	c.br.ReadString('\n')
	cancel()
	if r := p.waitEnded(t); r != ReasonContextDone {
		t.Errorf("Serve returned %q, want %q", r, ReasonContextDone)
	}
	c.expectEnd(t) // the handler returned: the response ends cleanly
}

// TestStalledClientTimesOut: a client that reads nothing is dropped by the
// write deadline instead of holding the handler forever.
func TestStalledClientTimesOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{WriteTimeout: 50 * time.Millisecond}, true)
	_, p := e.open(t) // never reads
	big := bytes.Repeat([]byte("z"), 1<<20)
	for {
		select {
		case r := <-p.ended:
			if r != ReasonWriteTimeout {
				t.Fatalf("Serve returned %q, want %q", r, ReasonWriteTimeout)
			}
			return
		case <-time.After(5 * time.Millisecond):
			p.fake.push(p.stream, core.Item{Body: big})
		}
	}
}

// TestReplacedLinkGetsNothing: once a source no longer names the stream as
// its link, the stream writes nothing more.
func TestReplacedLinkGetsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, true)
	c, p := e.open(t)
	c.br.ReadString('\n')
	p.fake.mu.Lock()
	p.fake.link = nil
	p.fake.mu.Unlock()
	p.fake.push(p.stream, core.Item{Body: []byte("not yours")})
	p.stream.Close(1000, "")
	if rest := c.expectEnd(t); rest != "" {
		t.Errorf("a replaced stream wrote %q", rest)
	}
}

func BenchmarkEvent(b *testing.B) {
	payload := bytes.Repeat([]byte(`{"type":1,"target":"send","arguments":["hello"]}`+"\x1e"), 8)
	var dst []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = appendEvent(dst[:0], payload)
	}
}

// An event that carries sends is one observation of the delivery latency,
// from the oldest send's acceptance.
func TestDeliveryLatencyObservedPerEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{}, false)
	accepted := time.Now().Add(-300 * time.Millisecond).UnixNano()
	e.prepare = func(p *peer) {
		p.conn.Deliver(&core.Message{Data: []byte("a"), Accepted: accepted + int64(200*time.Millisecond)})
		p.conn.Deliver(&core.Message{Data: []byte("b"), Accepted: accepted})
		p.conn.Deliver(&core.Message{Data: []byte("c")})
	}
	c, _ := e.open(t)
	c.readEvent(t)
	eventually.True(t, "one latency observation", 10*time.Second, func() bool {
		n, _ := metrictest.Histogram(t, e.reg, "switchboard_delivery_latency_seconds", "transport", "sse")
		return n > 0
	})
	n, sum := metrictest.Histogram(t, e.reg, "switchboard_delivery_latency_seconds", "transport", "sse")
	if n != 1 || sum < 0.3 || sum > 60 {
		t.Errorf("latency count %d, sum %v s: want one observation of the oldest send (at least 0.3 s)", n, sum)
	}
}
