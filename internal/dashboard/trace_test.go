package dashboard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboardhq/switchboard/internal/core"
)

func newTestTracer(t *testing.T, cfg TraceConfig) (*Tracer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	tr, err := NewTracer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr, reg
}

func sendTo(o core.Observer, hub string, kind core.TargetKind, name string) {
	o.Sent(hub, core.Target{Kind: kind, Name: name}, &core.Message{Type: core.Text, Data: []byte("hello")}, nil)
}

func drain(w *Watcher) []Event {
	var out []Event
	for {
		select {
		case e := <-w.C:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestTraceFilters(t *testing.T) {
	tr, _ := newTestTracer(t, TraceConfig{})
	o := tr.Namespace("webpubsub")
	all, _ := tr.Watch(Filter{})
	byHub, _ := tr.Watch(Filter{Hub: "a"})
	byGroup, _ := tr.Watch(Filter{Group: "g"})
	byUser, _ := tr.Watch(Filter{User: "ann"})
	byConn, _ := tr.Watch(Filter{Conn: "c1"})
	sendTo(o, "a", core.ToGroup, "g")
	sendTo(o, "b", core.ToGroup, "g")
	sendTo(o, "a", core.ToUser, "ann")
	sendTo(o, "b", core.ToConn, "c1")
	sendTo(o, "b", core.ToAll, "")
	req := httptest.NewRequest("POST", "http://backend.test/events?code=secret", nil)
	req.Header.Set("ce-hub", "a")
	req.Header.Set("ce-userId", "ann")
	req.Header.Set("ce-connectionId", "c1")
	req.Header.Set("ce-eventName", "connect")
	tr.Called(req, "system", 500, 12*time.Millisecond, nil)
	for _, c := range []struct {
		name string
		w    *Watcher
		want []string // target names, "" for the webhook
	}{
		{"all", all, []string{"g", "g", "ann", "c1", "", "webhook"}},
		{"hub a", byHub, []string{"g", "ann", "webhook"}},
		{"group g", byGroup, []string{"g", "g"}},
		{"user ann", byUser, []string{"ann", "webhook"}},
		{"conn c1", byConn, []string{"c1", "webhook"}},
	} {
		var got []string
		for _, e := range drain(c.w) {
			if e.Kind == "webhook" {
				got = append(got, "webhook")
				if e.URL != "http://backend.test/events" || e.Status != 500 || e.Millis != 12 || e.Event != "system:connect" {
					t.Errorf("webhook event %+v (the URL's query must not show)", e)
				}
				continue
			}
			got = append(got, e.TargetName)
			if e.Size != 5 || e.Type != "text" {
				t.Errorf("message event %+v", e)
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %q, want %q", c.name, got, c.want)
				break
			}
		}
	}
}

func TestTraceBounds(t *testing.T) {
	tr, reg := newTestTracer(t, TraceConfig{MaxWatchers: 2, Buffer: 4})
	o := tr.Namespace("webpubsub")
	slow, err := tr.Watch(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Watch(Filter{Hub: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Watch(Filter{}); err != ErrTooManyWatchers {
		t.Fatalf("third watcher: %v, want ErrTooManyWatchers", err)
	}
	for range 10 {
		sendTo(o, "h", core.ToAll, "")
	}
	if got := len(drain(slow)); got != 4 {
		t.Fatalf("the watcher got %d events, want its buffer's 4", got)
	}
	if slow.Dropped() != 6 {
		t.Fatalf("dropped %d, want 6", slow.Dropped())
	}
	if got := testutil.ToFloat64(tr.dropped); got != 6 {
		t.Fatalf("switchboard_dashboard_trace_dropped_total = %v", got)
	}
	tr.Unwatch(slow)
	if _, err := tr.Watch(Filter{}); err != nil {
		t.Fatalf("a watcher after one left: %v", err)
	}
	tr.Close()
	if tr.Watching() {
		t.Fatal("watchers left after Close")
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("Unwatch did not end the watcher")
	}
	_ = reg
}

// TestTraceCostsNothingWhileNobodyWatches: with no watcher, the observer
// builds no event and allocates nothing.
func TestTraceCostsNothingWhileNobodyWatches(t *testing.T) {
	tr, _ := newTestTracer(t, TraceConfig{})
	o := tr.Namespace("webpubsub")
	m := &core.Message{Type: core.Text, Data: []byte("x")}
	req := httptest.NewRequest("POST", "http://backend.test/", nil)
	allocs := testing.AllocsPerRun(1000, func() {
		o.Sent("h", core.Target{Kind: core.ToGroup, Name: "g"}, m, nil)
		tr.Called(req, "system", 200, time.Millisecond, nil)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per event with nobody watching, want 0", allocs)
	}
	if got := testutil.CollectAndCount(tr.events); got != 0 {
		t.Fatalf("%d event kinds counted with nobody watching, want none built", got)
	}
	w, _ := tr.Watch(Filter{})
	o.Sent("h", core.Target{Kind: core.ToGroup, Name: "g"}, m, nil)
	if len(drain(w)) != 1 {
		t.Fatal("a watcher got no event")
	}
}

// TestTraceStream: the SSE stream carries the events its filter matches, and
// ends when the dashboard closes (server shutdown).
func TestTraceStream(t *testing.T) {
	f := newFixture(t, nil)
	cookie := f.session()
	srv := httptest.NewServer(f.mux)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/dashboard/api/trace?hub=a", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("trace: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf) // the opening comment: the watcher is registered
	if n == 0 {
		t.Fatal("no opening comment")
	}
	o := f.d.cfg.Tracer.Namespace("webpubsub")
	sendTo(o, "b", core.ToAll, "")
	sendTo(o, "a", core.ToGroup, "seen")
	got := ""
	for !strings.Contains(got, `"target_name":"seen"`) {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream ended before the event: %v (%q)", err, got)
		}
		got += string(buf[:n])
	}
	if strings.Contains(got, `"hub":"b"`) {
		t.Fatalf("hub filter let through %q", got)
	}
	f.d.Close()
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break // ended
		}
	}
}

func FuzzSessionCheck(f *testing.F) {
	s := newSessions("k", time.Hour)
	now := time.Unix(1_700_000_000, 0)
	f.Add(s.mint(now))
	f.Add("1.2.3")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		err := s.check(v, now)
		if err == nil {
			// Only a value this key signed passes.
			i := len(v) - 1
			for i >= 0 && v[i] != '.' {
				i--
			}
			if i < 0 || s.sign(v[:i]) != v[i+1:] {
				t.Fatalf("unsigned value %q accepted", v)
			}
		}
	})
}

// fakeRelay records what a tracer hands its relay.
type fakeRelay struct {
	published [][]byte
	watching  []bool
	refuse    bool
}

func (r *fakeRelay) Publish(b []byte) bool {
	r.published = append(r.published, b)
	return !r.refuse
}

func (r *fakeRelay) SetWatching(w bool) { r.watching = append(r.watching, w) }

// TestTraceRelay: the tracer tells its relay when its first watcher comes
// and its last goes, publishes its events only while another node watches
// (counting the ones the relay drops), and hands other nodes' events to
// its watchers.
func TestTraceRelay(t *testing.T) {
	tr, _ := newTestTracer(t, TraceConfig{})
	tr.SetNode("n1")
	r := &fakeRelay{}
	tr.UseRelay(r)
	o := tr.Namespace("webpubsub")
	sendTo(o, "h", core.ToAll, "")
	if len(r.published) != 0 || testutil.CollectAndCount(tr.events) != 0 {
		t.Fatal("an event was built while nobody watched anywhere")
	}
	tr.RemoteWatching(true)
	sendTo(o, "h", core.ToAll, "")
	if len(r.published) != 1 || !strings.Contains(string(r.published[0]), `"node":"n1"`) {
		t.Fatalf("published %q", r.published)
	}
	r.refuse = true
	sendTo(o, "h", core.ToAll, "")
	if got := testutil.ToFloat64(tr.dropped); got != 1 {
		t.Fatalf("dropped %v, want the relay's refusal counted", got)
	}
	tr.RemoteWatching(false)
	sendTo(o, "h", core.ToAll, "")
	if len(r.published) != 2 {
		t.Fatalf("published %d after the other nodes stopped watching, want 2", len(r.published))
	}
	w1, _ := tr.Watch(Filter{Hub: "far"})
	w2, _ := tr.Watch(Filter{})
	tr.DeliverRemote([]byte(`{"kind":"connected","node":"n2","hub":"far","conn":"n2_x"}`))
	tr.DeliverRemote([]byte(`not json`))
	if got := drain(w1); len(got) != 1 || got[0].Node != "n2" || got[0].Conn != "n2_x" {
		t.Fatalf("the watcher got %+v", got)
	}
	tr.Unwatch(w1)
	tr.Unwatch(w2)
	tr.Unwatch(w2) // twice: no second SetWatching(false)
	if len(r.watching) != 2 || !r.watching[0] || r.watching[1] {
		t.Fatalf("SetWatching calls %v, want [true false]", r.watching)
	}
}
