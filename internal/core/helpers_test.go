package core_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/core"
)

// testCodec encodes a message as prefix + data and counts its encodes.
type testCodec struct {
	key       int
	prefix    string
	sequenced bool
	encodes   atomic.Int64
}

func (c *testCodec) Key() int { return c.key }

func (c *testCodec) EncodeMessage(m *core.Message) core.Frame {
	c.encodes.Add(1)
	b := make([]byte, 0, len(c.prefix)+len(m.Data))
	b = append(append(b, c.prefix...), m.Data...)
	return core.Frame{Data: b, Binary: m.Type == core.Binary}
}

func (c *testCodec) Sequenced() bool { return c.sequenced }

func (c *testCodec) AppendHead(dst []byte, seq uint64, _ []byte) []byte {
	dst = append(dst, "#"...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, ' ')
}

func (c *testCodec) EncodeDisconnected(reason string) (core.Frame, bool) {
	return core.Frame{Data: []byte("disconnected:" + reason)}, true
}

func newCodec(key int, prefix string) *testCodec { return &testCodec{key: key, prefix: prefix} }

// recLink is a Link that records wakes and closes.
type recLink struct {
	wakes  atomic.Int64
	mu     sync.Mutex
	closes []closeCall
}

type closeCall struct {
	code   int
	reason string
}

func (l *recLink) Wake() { l.wakes.Add(1) }

func (l *recLink) Close(code int, reason string) {
	l.mu.Lock()
	l.closes = append(l.closes, closeCall{code, reason})
	l.mu.Unlock()
}

func (l *recLink) closeCalls() []closeCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]closeCall(nil), l.closes...)
}

// testNode returns a node on the in-process broker, with limits and
// recovery window as given, and the registry its metrics go to.
func testNode(t testing.TB, cfg core.Config) *core.Node {
	t.Helper()
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	n, err := core.NewNode(cfg)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	return n
}

func testHub(t testing.TB, n *core.Node, name string) *core.Hub {
	t.Helper()
	h, err := n.Hub(name)
	if err != nil {
		t.Fatalf("Hub(%q): %v", name, err)
	}
	return h
}

// client is a connected conn with its recording link.
type client struct {
	*core.Conn
	link *recLink
}

func connect(t testing.TB, h *core.Hub, info core.ConnInfo) client {
	t.Helper()
	if info.Codec == nil {
		info.Codec = newCodec(1, "")
	}
	l := &recLink{}
	c, err := h.Connect(info, l)
	if err != nil {
		t.Fatalf("Connect(%+v): %v", info, err)
	}
	return client{c, l}
}

// bodies drains c and returns the queued bodies, each prefixed with its
// per-conn head for sequenced items.
func (c client) bodies() []string {
	var out []string
	for _, it := range c.Drain(c.link, nil) {
		out = append(out, string(c.AppendHead(nil, it.Seq, it.Body))+string(it.Body))
	}
	return out
}

// within runs fn on a new goroutine and fails the test if it does not return
// before timeout (it then keeps running: a deadlock cannot be undone).
func within(t testing.TB, what string, timeout time.Duration, fn func()) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		t.Errorf("%s did not return within %v (deadlock?)", what, timeout)
		return false
	}
}

func textMsg(s string) *core.Message { return &core.Message{Type: core.Text, Data: []byte(s)} }
