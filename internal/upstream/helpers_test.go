package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

const (
	testKey1   = "primary-access-key-0123456789"
	testKey2   = "secondary-access-key-9876543210"
	testOrigin = "pubsub.example.com"
)

// recorded is one request a backend received.
type recorded struct {
	method string
	path   string // escaped
	query  string
	header http.Header
	body   []byte
}

// backend is a loopback event handler. Validation requests (OPTIONS, GET) are answered
// with WebHook-Allowed-Origin = allow (status validateStatus, default 200); POSTs go to
// handle (default: 204).
type backend struct {
	*httptest.Server

	mu             sync.Mutex
	posts          []recorded
	validations    []recorded
	allow          string
	validateStatus int
	handle         func(w http.ResponseWriter, r *http.Request, body []byte)
}

func newBackend(t testing.TB, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *backend {
	t.Helper()
	b := &backend{allow: "*", handle: handle}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, path: r.URL.EscapedPath(), query: r.URL.RawQuery, header: r.Header.Clone(), body: body}
	b.mu.Lock()
	if r.Method != http.MethodPost {
		b.validations = append(b.validations, rec)
		allow, status := b.allow, b.validateStatus
		b.mu.Unlock()
		if allow != "" {
			w.Header().Set("WebHook-Allowed-Origin", allow)
		}
		if status != 0 {
			w.WriteHeader(status)
		}
		return
	}
	b.posts = append(b.posts, rec)
	handle := b.handle
	b.mu.Unlock()
	if handle == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	handle(w, r, body)
}

func (b *backend) setValidation(allow string, status int) {
	b.mu.Lock()
	b.allow, b.validateStatus = allow, status
	b.mu.Unlock()
}

func (b *backend) gotPosts() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recorded(nil), b.posts...)
}

func (b *backend) gotValidations() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recorded(nil), b.validations...)
}

// handler returns a Handler of b taking everything, with template path tail.
func (b *backend) handler(tail string) Handler {
	return Handler{
		URLTemplate:  b.URL + tail,
		UserEvents:   []string{"*"},
		SystemEvents: []string{EventConnect, EventConnected, EventDisconnected},
	}
}

func testKeys(t testing.TB) *auth.KeyRing {
	t.Helper()
	k, err := auth.NewKeyRing(testKey1, testKey2)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newClient returns a Client of cfg with test defaults (two keys, testOrigin, a private
// registry, retries after 10ms) closed at cleanup.
func newClient(t testing.TB, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Keys == nil {
		cfg.Keys = testKeys(t)
	}
	if cfg.Origin == "" {
		cfg.Origin = testOrigin
	}
	if cfg.Retry == nil {
		cfg.Retry = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}
	}
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, reg
}

// handlers returns a Config.Handlers giving hs to every hub.
func handlers(hs ...Handler) func(string) []Handler {
	return func(string) []Handler { return hs }
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// clientGoroutines returns the stacks of goroutines running Client, SignalRClient or
// dispatcher code, or the HTTP client's connections.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "internal/upstream.(*Client)") || strings.Contains(g, "internal/upstream.New") ||
			strings.Contains(g, "internal/upstream.(*dispatcher)") || strings.Contains(g, "internal/upstream.newDispatcher") ||
			strings.Contains(g, "internal/upstream.(*SignalRClient)") || strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}

var testConn = Conn{Hub: "chat", ID: "conn-1", UserID: "alice", Subprotocol: "json.webpubsub.azure.v1"}

// checkClosedClean checks what Close leaves behind: want connection events
// dropped as closed, an empty queue, and (once the HTTP client's sockets
// close) none of the client's goroutines.
func checkClosedClean(t *testing.T, m *metrics, want float64) {
	t.Helper()
	dropped := counter(m.dropped.WithLabelValues(kindConnected, dropClosed)) +
		counter(m.dropped.WithLabelValues(kindDisconnected, dropClosed))
	if dropped != want {
		t.Errorf("dropped_total{…,closed} = %v, want %v", dropped, want)
	}
	if got := counter(m.queued); got != 0 {
		t.Errorf("queued_events = %v after Close", got)
	}
	eventually.Nil(t, 10*time.Second, func() error {
		if left := clientGoroutines(); len(left) > 0 {
			return fmt.Errorf("goroutines left after Close:\n%s", strings.Join(left, "\n\n"))
		}
		return nil
	})
}
