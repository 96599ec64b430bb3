package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

func TestConnectedDisconnectedRequests(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/api/{hub}/{event}"))})
	conn := testConn
	conn.State = "c3RhdGU="
	c.Connected(conn)
	c.Disconnected(conn, "client closed: 1000")
	anon := Conn{Hub: "chat", ID: "anon"}
	c.Disconnected(anon, "")
	eventually.True(t, "3 events", 10*time.Second, func() bool { return len(b.gotPosts()) == 3 })
	posts := b.gotPosts()
	tests := []struct {
		conn            Conn
		ceType, name    string
		body            string
		path            string
		wantContentType string
	}{
		{conn, "azure.webpubsub.sys.connected", "connected", `{}`, "/api/chat/connected", "application/json"},
		{conn, "azure.webpubsub.sys.disconnected", "disconnected", `{"reason":"client closed: 1000"}`, "/api/chat/disconnected", "application/json"},
		{anon, "azure.webpubsub.sys.disconnected", "disconnected", `{"reason":""}`, "/api/chat/disconnected", "application/json"},
	}
	// Events of different conns may interleave; those of one conn keep their order.
	byConn := map[string][]recorded{}
	for _, p := range posts {
		id := p.header.Get("ce-connectionId")
		byConn[id] = append(byConn[id], p)
	}
	seen := map[string]int{}
	for _, tt := range tests {
		got := byConn[tt.conn.ID][seen[tt.conn.ID]]
		seen[tt.conn.ID]++
		checkCommonHeaders(t, got, tt.conn, tt.ceType, tt.name)
		if string(got.body) != tt.body {
			t.Errorf("%s body = %s, want %s", tt.name, got.body, tt.body)
		}
		if got.path != tt.path {
			t.Errorf("%s path = %s", tt.name, got.path)
		}
		if ct := got.header.Get("Content-Type"); ct != tt.wantContentType {
			t.Errorf("%s Content-Type = %q", tt.name, ct)
		}
	}
}

func TestAsyncNoHandler(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	h := b.handler("/")
	h.SystemEvents = []string{EventConnect}
	c, _ := newClient(t, Config{Handlers: handlers(h)})
	c.Connected(testConn)
	c.Disconnected(testConn, "x")
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(b.gotPosts()); n != 0 {
		t.Fatalf("%d events sent without a handler", n)
	}
}

// TestAsyncRetry: connected fails twice with 500, then succeeds; disconnected of the same
// conn waits for it.
func TestAsyncRetry(t *testing.T) {
	t.Parallel()
	var connectedCalls atomic.Int32
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("ce-eventName") == "connected" && connectedCalls.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	c.Connected(testConn)
	c.Disconnected(testConn, "bye")
	eventually.True(t, "4 requests", 10*time.Second, func() bool { return len(b.gotPosts()) == 4 })

	posts := b.gotPosts()
	var names []string
	for _, p := range posts {
		names = append(names, p.header.Get("ce-eventName"))
	}
	if got := strings.Join(names, ","); got != "connected,connected,connected,disconnected" {
		t.Fatalf("events %s, want connected ×3 then disconnected", got)
	}
	if id := posts[0].header.Get("ce-id"); posts[1].header.Get("ce-id") != id || posts[2].header.Get("ce-id") != id ||
		posts[3].header.Get("ce-id") == id {
		t.Error("a retried event must keep its ce-id, and the next event get another")
	}
	if tm := posts[0].header.Get("ce-time"); posts[2].header.Get("ce-time") != tm {
		t.Error("a retried event must keep its ce-time")
	}
	if got := counter(c.metrics.retries.WithLabelValues("connected")); got != 2 {
		t.Errorf("retries_total{connected} = %v, want 2", got)
	}
	if got := counter(c.metrics.requests.WithLabelValues("connected", "500")); got != 2 {
		t.Errorf("requests_total{connected,500} = %v, want 2", got)
	}
	if got := counter(c.metrics.requests.WithLabelValues("connected", "200")); got != 1 {
		t.Errorf("requests_total{connected,200} = %v, want 1", got)
	}
	if err := c.Close(context.Background()); err != nil { // waits for anything still queued
		t.Fatal(err)
	}
	if n := len(b.gotPosts()); n != 4 {
		t.Errorf("%d requests after delivery, want 4", n)
	}
}

func TestAsyncRetryStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status  int
		retried bool
	}{
		{408, true}, {429, true}, {500, true}, {502, true}, {503, true},
		{400, false}, {401, false}, {404, false}, {302, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.WriteHeader(tt.status)
			})
			c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), Retry: []time.Duration{time.Millisecond}})
			c.Disconnected(testConn, "x")
			if err := c.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := 1
			if tt.retried {
				want = 2
				if got := counter(c.metrics.dropped.WithLabelValues("disconnected", dropRetries)); got != 1 {
					t.Errorf("dropped_total{disconnected,retries_exhausted} = %v, want 1", got)
				}
			}
			if n := len(b.gotPosts()); n != want {
				t.Errorf("%d attempts, want %d", n, want)
			}
		})
	}
}

func TestAsyncRetriesExhausted(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("ce-eventName") == "connected" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))}) // 3 retries
	c.Connected(testConn)
	c.Disconnected(testConn, "bye")
	eventually.True(t, "5 requests", 10*time.Second, func() bool { return len(b.gotPosts()) == 5 })
	var names []string
	for _, p := range b.gotPosts() {
		names = append(names, p.header.Get("ce-eventName"))
	}
	if got := strings.Join(names, ","); got != "connected,connected,connected,connected,disconnected" {
		t.Fatalf("events %s, want 4 attempts of connected, then disconnected", got)
	}
	eventually.True(t, "drop counted", 10*time.Second, func() bool {
		return counter(c.metrics.dropped.WithLabelValues("connected", dropRetries)) == 1
	})
	if got := counter(c.metrics.retries.WithLabelValues("connected")); got != 3 {
		t.Errorf("retries_total{connected} = %v, want 3", got)
	}
}

func TestAsyncNetworkErrorRetried(t *testing.T) {
	t.Parallel()
	// The first handler host is down; a later one takes over (a config change), and the
	// event goes there on a retry.
	var up atomic.Bool
	b := newBackend(t, nil)
	dead := Handler{URLTemplate: "http://" + deadAddr(t) + "/", SystemEvents: []string{EventConnected}}
	c, _ := newClient(t, Config{
		Handlers: func(string) []Handler {
			if up.Load() {
				return []Handler{b.handler("/")}
			}
			return []Handler{dead}
		},
		Retry: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond},
	})
	c.Connected(testConn)
	up.Store(true)
	c.Connected(Conn{Hub: "chat", ID: "conn-2"})
	eventually.True(t, "conn-2 delivered", 10*time.Second, func() bool { return len(b.gotPosts()) == 1 })
	eventually.True(t, "conn-1 dropped after retries", 10*time.Second, func() bool {
		return counter(c.metrics.dropped.WithLabelValues("connected", dropRetries)) == 1
	})
	if got := counter(c.metrics.retries.WithLabelValues("connected")); got != 3 {
		t.Errorf("retries_total{connected} = %v, want 3", got)
	}
}

func TestAsyncOrderPerConnection(t *testing.T) {
	t.Parallel()
	// Every conn's connected fails once; each conn still sees connected before disconnected.
	var mu sync.Mutex
	failed := map[string]bool{}
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		id := r.Header.Get("ce-connectionId")
		mu.Lock()
		first := !failed[id]
		failed[id] = true
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), Workers: 4})
	const conns = 50
	for i := range conns {
		conn := Conn{Hub: "chat", ID: fmt.Sprint("c", i)}
		c.Connected(conn)
		c.Disconnected(conn, "bye")
	}
	eventually.True(t, "every event", 10*time.Second, func() bool { return len(b.gotPosts()) == 3*conns })
	seq := map[string][]string{}
	for _, p := range b.gotPosts() {
		id := p.header.Get("ce-connectionId")
		seq[id] = append(seq[id], p.header.Get("ce-eventName"))
	}
	for id, s := range seq {
		if got := strings.Join(s, ","); got != "connected,connected,disconnected" {
			t.Errorf("conn %s saw %s", id, got)
		}
	}
}

func TestAsyncSlowConnDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if r.Header.Get("ce-connectionId") == "slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), Workers: 2})
	slow := Conn{Hub: "chat", ID: "slow"}
	c.Connected(slow)
	c.Disconnected(slow, "bye")
	eventually.True(t, "the slow conn's connected in flight", 10*time.Second, func() bool { return len(b.gotPosts()) == 1 })
	const others = 30
	for i := range others {
		conn := Conn{Hub: "chat", ID: fmt.Sprint("fast", i)}
		c.Connected(conn)
		c.Disconnected(conn, "bye")
	}
	eventually.True(t, "the other conns' events", 10*time.Second, func() bool { return len(b.gotPosts()) == 1+2*others })
	for _, p := range b.gotPosts() {
		if p.header.Get("ce-connectionId") == "slow" && p.header.Get("ce-eventName") == "disconnected" {
			t.Fatal("the slow conn's disconnected overtook its connected")
		}
	}
	close(release)
	eventually.True(t, "the slow conn's disconnected", 10*time.Second, func() bool { return len(b.gotPosts()) == 2+2*others })
	if last := b.gotPosts()[1+2*others]; last.header.Get("ce-connectionId") != "slow" || last.header.Get("ce-eventName") != "disconnected" {
		t.Fatalf("last event %s of %s", last.header.Get("ce-eventName"), last.header.Get("ce-connectionId"))
	}
}

func TestAsyncQueueOverflow(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), Workers: 1, QueueLimit: 3})
	for i := range 10 {
		c.Connected(Conn{Hub: "chat", ID: fmt.Sprint("c", i)})
	}
	if got := counter(c.metrics.dropped.WithLabelValues("connected", dropQueueFull)); got != 7 {
		t.Fatalf("dropped_total{connected,queue_full} = %v, want 7", got)
	}
	if got := counter(c.metrics.queued); got != 3 {
		t.Errorf("queued_events = %v, want 3", got)
	}
	close(release)
	eventually.True(t, "the queued events", 10*time.Second, func() bool { return len(b.gotPosts()) == 3 })
	eventually.True(t, "an empty queue", 10*time.Second, func() bool { return counter(c.metrics.queued) == 0 })
	// With room again, events are taken.
	c.Disconnected(Conn{Hub: "chat", ID: "c0"}, "")
	eventually.True(t, "one more", 10*time.Second, func() bool { return len(b.gotPosts()) == 4 })
	var got []string
	for _, p := range b.gotPosts()[:3] {
		got = append(got, p.header.Get("ce-connectionId"))
	}
	if strings.Join(got, ",") != "c0,c1,c2" {
		t.Errorf("delivered %v, want the first three in order", got)
	}
}

func TestCloseDrains(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		time.Sleep(time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), Workers: 2})
	for i := range 20 {
		conn := Conn{Hub: "chat", ID: fmt.Sprint("c", i)}
		c.Connected(conn)
		c.Disconnected(conn, "server shutting down")
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(b.gotPosts()); n != 40 {
		t.Fatalf("%d events delivered before Close returned, want 40", n)
	}
	c.Connected(testConn)
	if got := counter(c.metrics.dropped.WithLabelValues("connected", dropClosed)); got != 1 {
		t.Errorf("dropped_total{connected,closed} after Close = %v, want 1", got)
	}
}

// TestCloseStopsEverything closes a Client with a delivery in flight, a retry pending, a
// validation in flight and a Connect waiting on it, and checks that no goroutine of the
// Client (or of its HTTP client) is left.
func TestCloseStopsEverything(t *testing.T) {
	// Not parallel: it counts goroutines.
	stuck := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		<-r.Context().Done()
	})
	failing := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	validating := newBackend(t, nil)
	validationStarted := make(chan struct{})
	validating.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(validationStarted)
		<-r.Context().Done()
	})
	byHub := map[string][]Handler{
		"stuck":      {stuck.handler("/")},
		"failing":    {failing.handler("/")},
		"validating": {validating.handler("/")},
	}
	c, err := New(Config{
		Keys: testKeys(t), Origin: testOrigin, Workers: 3,
		Handlers: func(hub string) []Handler { return byHub[hub] },
		Retry:    []time.Duration{time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Connected(Conn{Hub: "stuck", ID: "a"})
	c.Disconnected(Conn{Hub: "stuck", ID: "a"}, "")
	c.Connected(Conn{Hub: "failing", ID: "b"})
	connectErr := make(chan error, 1)
	go func() {
		_, err := c.Connect(context.Background(), ConnectRequest{Conn: Conn{Hub: "validating", ID: "c"}})
		connectErr <- err
	}()
	<-validationStarted
	eventually.True(t, "the stuck delivery and the retry", 10*time.Second, func() bool {
		return len(stuck.gotPosts()) == 1 && counter(c.metrics.retries.WithLabelValues("connected")) == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close() = %v, want DeadlineExceeded (events were pending)", err)
	}
	if err := <-connectErr; !errors.Is(err, ErrClosed) && !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Connect() during Close = %v", err)
	}
	// Close returned after its own goroutines ended; the HTTP client's connection
	// goroutines end as their sockets close.
	checkClosedClean(t, c.metrics, 3)
}

func TestAsyncMetricLabels(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, reg := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	if _, err := c.UserEvent(context.Background(), testConn, "some.custom-event", "text/plain", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); err != nil {
		t.Fatal(err)
	}
	c.Connected(testConn)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "event" && !map[string]bool{"connect": true, "connected": true, "disconnected": true, "user": true}[l.GetValue()] {
					t.Errorf("%s has event label %q", f.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, want := range []string{
		"switchboard_upstream_requests_total", "switchboard_upstream_request_duration_seconds",
		"switchboard_upstream_validation_failures_total", "switchboard_upstream_queued_events",
	} {
		if !names[want] {
			t.Errorf("metric %s not exported", want)
		}
	}
	// Two clients may share a registry.
	c2, err := New(Config{Keys: testKeys(t), Origin: "h", Registerer: reg, Workers: 1})
	if err != nil {
		t.Fatalf("second client on the registry: %v", err)
	}
	if err := c2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAsyncUnsendableDropped(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	badURL := Handler{URLTemplate: "http://h:port/x", SystemEvents: []string{EventDisconnected}}
	c, _ := newClient(t, Config{Handlers: func(hub string) []Handler {
		if hub == "bad" {
			return []Handler{badURL}
		}
		return []Handler{b.handler("/")}
	}})
	c.Connected(Conn{Hub: "chat", ID: "c1", UserID: "evil\r\nX-Injected: 1"})
	c.Disconnected(Conn{Hub: "bad", ID: "c2"}, "")
	c.Connected(Conn{Hub: "chat", ID: "c3"})
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter(c.metrics.dropped.WithLabelValues("connected", dropInvalid)); got != 1 {
		t.Errorf("dropped_total{connected,invalid} = %v, want 1", got)
	}
	if got := counter(c.metrics.dropped.WithLabelValues("disconnected", dropInvalid)); got != 1 {
		t.Errorf("dropped_total{disconnected,invalid} = %v, want 1", got)
	}
	if got := counter(c.metrics.retries.WithLabelValues("connected")) + counter(c.metrics.retries.WithLabelValues("disconnected")); got != 0 {
		t.Errorf("unsendable events were retried %v times", got)
	}
	if posts := b.gotPosts(); len(posts) != 1 || posts[0].header.Get("ce-connectionId") != "c3" {
		t.Errorf("posts %v, want only c3's", len(posts))
	}
}
