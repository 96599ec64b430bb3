package longpoll

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// testCodec encodes a message as its data; the disconnected notice is
// "bye:<reason>".
type testCodec struct{}

func (testCodec) Key() int                                         { return 7 }
func (testCodec) EncodeMessage(m *core.Message) core.Frame         { return core.Frame{Data: m.Data} }
func (testCodec) Sequenced() bool                                  { return false }
func (testCodec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (testCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return core.Frame{Data: []byte("bye:" + reason)}, true
}

// env is one long-polling Conn bound to a real core conn, served on
// loopback: GET polls, DELETE stops, as the dialect would route them.
type env struct {
	lp   *Conn
	conn *core.Conn
	hub  *core.Hub
	reg  *prometheus.Registry
	url  string

	mu    sync.Mutex
	gones []string
	gone  chan struct{} // closed on the first OnGone
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := newConnEnv(t, opts)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			e.lp.Poll(w, r)
		case http.MethodDelete:
			e.lp.Stop()
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		e.lp.Stop()
	})
	e.url = ts.URL
	return e
}

// newBubbleEnv is newEnv without a listener, for tests of the conn's timers
// inside a synctest bubble (which cannot wait on real sockets): polls call
// Poll with a recorder.
func newBubbleEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := newConnEnv(t, opts)
	t.Cleanup(e.lp.Stop)
	return e
}

// newConnEnv is the conn of an env, bound to a real core conn.
func newConnEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), gone: make(chan struct{})}
	node, err := core.NewNode(core.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if e.hub, err = node.Hub("chat"); err != nil {
		t.Fatal(err)
	}
	if opts.MaxGap == 0 {
		opts.MaxGap = time.Minute
	}
	opts.Registerer = e.reg
	opts.OnGone = func(reason string) {
		e.mu.Lock()
		e.gones = append(e.gones, reason)
		if len(e.gones) == 1 {
			close(e.gone)
		}
		e.mu.Unlock()
		e.conn.Detach(e.lp, reason) // as the dialect does
	}
	// The conn must exist before OnGone can run: hold the lock until then.
	e.mu.Lock()
	e.lp = New(opts)
	if e.conn, err = e.hub.Connect(core.ConnInfo{Codec: testCodec{}, Dialect: "test"}, e.lp); err != nil {
		t.Fatal(err)
	}
	e.lp.Bind(e.conn)
	e.mu.Unlock()
	return e
}

func (e *env) goneReasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.gones...)
}

func (e *env) waitGone(t *testing.T) []string {
	t.Helper()
	select {
	case <-e.gone:
		return e.goneReasons()
	case <-time.After(10 * time.Second):
		t.Fatal("OnGone not called within 10s")
		return nil
	}
}

// answer is a poll response.
type answer struct {
	status int
	body   string
	header http.Header
	length int64
	err    error
}

func (e *env) poll(ctx context.Context) answer {
	if e.url == "" { // a bubble env: no socket, and no timeout (its clock would pass it at once)
		rec := httptest.NewRecorder()
		e.lp.Poll(rec, httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil))
		if err := ctx.Err(); err != nil {
			return answer{err: err}
		}
		resp := rec.Result()
		return answer{status: resp.StatusCode, body: rec.Body.String(), header: resp.Header, length: resp.ContentLength}
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header, length: resp.ContentLength, err: err}
}

// mustPoll polls and checks the status.
func (e *env) mustPoll(t *testing.T, status int) answer {
	t.Helper()
	a := e.poll(context.Background())
	if a.err != nil {
		t.Fatalf("poll: %v", a.err)
	}
	if a.status != status {
		t.Fatalf("poll: status %d (body %q), want %d", a.status, a.body, status)
	}
	return a
}

// pollAsync starts a poll and returns where its answer arrives.
func (e *env) pollAsync(ctx context.Context) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- e.poll(ctx) }()
	return ch
}

func wait(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("poll: %v", a.err)
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("poll not answered within 10s")
		return answer{}
	}
}

// expectGapIn checks, on a bubble's clock, that the conn is still there 1 ns
// before gap from now and gone, for the gap, at it.
func (e *env) expectGapIn(t *testing.T, gap time.Duration) {
	t.Helper()
	time.Sleep(gap - time.Nanosecond)
	synctest.Wait()
	if got := e.goneReasons(); len(got) != 0 {
		t.Fatalf("OnGone %q before MaxGap", got)
	}
	time.Sleep(time.Nanosecond)
	synctest.Wait()
	if got := e.goneReasons(); len(got) != 1 || got[0] != ReasonGap {
		t.Fatalf("OnGone %q at MaxGap, want once %q", got, ReasonGap)
	}
}

// isHeld reports whether a poll is waiting for data.
func (e *env) isHeld() bool {
	e.lp.mu.Lock()
	defer e.lp.mu.Unlock()
	return e.lp.held != nil
}

func (e *env) del(t *testing.T) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, e.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func deliver(c *core.Conn, bodies ...string) {
	for _, b := range bodies {
		c.Deliver(&core.Message{Data: []byte(b)})
	}
}
