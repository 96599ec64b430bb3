package signalr_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/api/signalr"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
)

const testKey = "signalr-rest-test-key-0123456789abcdef"

// codec writes a message as "<type>:<data>", so tests see both the payload and its type.
type codec struct{}

func (codec) Key() int { return 1 }

func (codec) EncodeMessage(m *core.Message) core.Frame {
	return core.Frame{Data: append([]byte(m.Type.String()+":"), m.Data...), Binary: m.Type == core.Binary}
}

func (codec) Sequenced() bool                                  { return false }
func (codec) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
func (codec) EncodeDisconnected(string) (core.Frame, bool)     { return core.Frame{}, false }

// link records the closes core asks for.
type link struct {
	mu     sync.Mutex
	closed []string // reasons
}

func (l *link) Wake() {}

func (l *link) Close(_ int, reason string) {
	l.mu.Lock()
	l.closed = append(l.closed, reason)
	l.mu.Unlock()
}

func (l *link) closes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.closed...)
}

// client is a connected test conn.
type client struct {
	*core.Conn
	link *link
}

// received drains the conn's queue and returns the encoded bodies.
func (c client) received() []string {
	var out []string
	for _, it := range c.Drain(c.link, nil) {
		out = append(out, string(it.Body))
	}
	return out
}

// env is a SignalR REST handler on a loopback server over a real core node.
type env struct {
	t    *testing.T
	srv  *httptest.Server
	node *core.Node
	keys *auth.KeyRing
	reg  *prometheus.Registry
}

type envOptions struct {
	maxBody       int64
	endpoint      string // Config.PublicEndpoint
	invokeTimeout time.Duration
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, reg: prometheus.NewRegistry()}
	var h http.Handler
	h, e.node, e.keys = newHandler(t, signalr.Config{MaxBodyBytes: o.maxBody, PublicEndpoint: o.endpoint, InvokeTimeout: o.invokeTimeout, Registerer: e.reg})
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// newHandler fills cfg with a new node on the local broker (unless it has one) and a key ring
// of testKey.
func newHandler(t testing.TB, cfg signalr.Config) (http.Handler, *core.Node, *auth.KeyRing) {
	t.Helper()
	var err error
	if cfg.Node == nil {
		if cfg.Node, err = core.NewNode(core.Config{Registerer: prometheus.NewRegistry()}); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Keys, err = auth.NewKeyRing(testKey); err != nil {
		t.Fatal(err)
	}
	h, err := signalr.NewHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, cfg.Node, cfg.Keys
}

func (e *env) hub(name string) *core.Hub {
	e.t.Helper()
	h, err := e.node.Hub(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// connect opens a conn of user (anonymous when "") on hub.
func (e *env) connect(hub, user string) client {
	e.t.Helper()
	l := &link{}
	c, err := e.hub(hub).Connect(core.ConnInfo{UserID: user, Codec: codec{}, Dialect: "test"}, l)
	if err != nil {
		e.t.Fatal(err)
	}
	return client{c, l}
}

// token mints a REST token whose aud is the server URL + target (path and query), as the
// Management SDK signs it.
func (e *env) token(target string) string {
	e.t.Helper()
	tok, err := e.keys.MintServerToken(e.srv.URL+target, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type reply struct {
	status int
	header http.Header
	body   string
}

// req sends method target (escaped path and query) with body; hdr adds headers. A valid token
// is added unless hdr sets Authorization ("-" sends none).
func (e *env) req(method, target, body string, hdr ...string) reply {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return e.reqBytes(method, target, rd, hdr...)
}

func (e *env) reqBytes(method, target string, body io.Reader, hdr ...string) reply {
	e.t.Helper()
	r, err := http.NewRequest(method, e.srv.URL+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+e.token(target))
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
		if hdr[i] == "Authorization" && hdr[i+1] == "-" {
			r.Header.Del("Authorization")
		}
	}
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// bodyOf returns a reader of n bytes.
func bodyOf(n int) io.Reader { return bytes.NewReader(bytes.Repeat([]byte{'x'}, n)) }
