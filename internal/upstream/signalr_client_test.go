package upstream

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
)

// emulatorKey is the SignalR emulator's public default key, the key of the spec's
// signature test vector.
const emulatorKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

// newSignalRClient returns a SignalRClient of cfg with test defaults (keys testKey1 and
// testKey2, a private registry, retries after 10ms) closed at cleanup.
func newSignalRClient(t testing.TB, cfg SignalRConfig) (*SignalRClient, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.Keys == nil {
		cfg.Keys = testKeys(t)
	}
	if cfg.Retry == nil {
		cfg.Retry = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}
	}
	if cfg.Registerer == nil {
		cfg.Registerer = reg
	}
	c, err := NewSignalR(cfg)
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

// upstreams returns a SignalRConfig.Upstreams giving us to every hub.
func upstreams(us ...SignalRUpstream) func(string) []SignalRUpstream {
	return func(string) []SignalRUpstream { return us }
}

// asrsSig computes one X-ASRS-Signature entry independently of the auth package.
func asrsSig(key, connID string) string {
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(connID))
	return "sha256=" + strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}

// asrsHeader returns the values of header name of a recorded request, and whether it
// was sent at all (absent rather than empty).
func asrsHeader(r recorded, name string) (string, bool) {
	vs, ok := r.header[http.CanonicalHeaderKey(name)]
	if !ok {
		return "", false
	}
	return strings.Join(vs, "|"), true
}

func TestSignalRConnectionEventRequests(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	keys, err := auth.NewKeyRing(emulatorKey, testKey2)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newSignalRClient(t, SignalRConfig{Keys: keys, Upstreams: upstreams(SignalRUpstream{
		URLTemplate: b.URL + "/{hub}/api/{category}/{event}", AuthHeader: "Bearer s3cret",
	})})
	full := SignalRConn{Hub: "chat", ID: "abc", UserID: "alice",
		Claims: [][2]string{{"name", "Alice"}, {"role", "admin"}, {"role", "ops"}, {"aud", "http://localhost/client/?hub=chat"}},
		Query:  "?hub=chat&foo=bar"}
	anon := SignalRConn{Hub: "chat", ID: "anon-1", Query: "hub=chat"} // '?' added
	c.Connected(full)
	c.Disconnected(full, `socket closed: "1006" <abnormal> & gone`)
	c.Connected(anon)
	c.Disconnected(anon, "")
	eventually.True(t, "4 events", 10*time.Second, func() bool { return len(b.gotPosts()) == 4 })

	byConn := map[string][]recorded{}
	for _, p := range b.gotPosts() {
		id := p.header.Get("X-ASRS-Connection-Id")
		byConn[id] = append(byConn[id], p)
	}
	type want struct {
		conn                 string
		event, body          string
		userID, claims, qry  string // "" = header absent
		signature, authority string
	}
	tests := []want{
		{"abc", "connected", `{"type":10}`, "alice", "name: Alice, role: admin, role: ops, aud: http://localhost/client/?hub=chat", "?hub=chat&foo=bar",
			// The spec's test vector (key emulatorKey, connection "abc"), then the second key.
			"sha256=D4B71F6479906BF45CDC69C969315019A67A52DEAE1EAB86C7A7F3D9B25CD31E," + asrsSig(testKey2, "abc"), "Bearer s3cret"},
		{"abc", "disconnected", `{"type":11,"error":"socket closed: \"1006\" \u003cabnormal\u003e \u0026 gone"}`, "alice",
			"name: Alice, role: admin, role: ops, aud: http://localhost/client/?hub=chat", "?hub=chat&foo=bar",
			"sha256=D4B71F6479906BF45CDC69C969315019A67A52DEAE1EAB86C7A7F3D9B25CD31E," + asrsSig(testKey2, "abc"), "Bearer s3cret"},
		{"anon-1", "connected", `{"type":10}`, "", "", "?hub=chat", asrsSig(emulatorKey, "anon-1") + "," + asrsSig(testKey2, "anon-1"), "Bearer s3cret"},
		{"anon-1", "disconnected", `{"type":11}`, "", "", "?hub=chat", asrsSig(emulatorKey, "anon-1") + "," + asrsSig(testKey2, "anon-1"), "Bearer s3cret"},
	}
	seen := map[string]int{}
	for _, tt := range tests {
		if seen[tt.conn] >= len(byConn[tt.conn]) {
			t.Fatalf("conn %s: missing %s", tt.conn, tt.event)
		}
		got := byConn[tt.conn][seen[tt.conn]]
		seen[tt.conn]++
		name := tt.conn + " " + tt.event
		if got.method != http.MethodPost || got.path != "/chat/api/connections/"+tt.event {
			t.Errorf("%s: %s %s", name, got.method, got.path)
		}
		if string(got.body) != tt.body {
			t.Errorf("%s: body %s, want %s", name, got.body, tt.body)
		}
		for _, h := range []struct{ name, want string }{
			{"X-ASRS-Connection-Id", tt.conn}, {"X-ASRS-Hub", "chat"}, {"X-ASRS-Category", "connections"},
			{"X-ASRS-Event", tt.event}, {"X-ASRS-User-Id", tt.userID}, {"X-ASRS-User-Claims", tt.claims},
			{"X-ASRS-Client-Query", tt.qry}, {"X-ASRS-Signature", tt.signature},
			{"Content-Type", "application/json"}, {"Authorization", tt.authority},
		} {
			v, present := asrsHeader(got, h.name)
			if v != h.want || present != (h.want != "") {
				t.Errorf("%s: %s = %q (present %v), want %q", name, h.name, v, present, h.want)
			}
		}
		if !keys.CheckSignature(tt.conn, got.header.Get("X-ASRS-Signature")) {
			t.Errorf("%s: signature does not verify", name)
		}
		for k := range got.header {
			if strings.HasPrefix(strings.ToLower(k), "ce-") || strings.EqualFold(k, "WebHook-Request-Origin") {
				t.Errorf("%s: Web PubSub header %s sent to a SignalR upstream", name, k)
			}
		}
	}
	if v := b.gotValidations(); len(v) != 0 {
		t.Errorf("%d abuse-protection requests sent to a SignalR upstream", len(v))
	}
}

// TestSignalRHeaderNames: the X-ASRS-* names go out with the service's spelling (some
// backends read raw header names).
func TestSignalRHeaderNames(t *testing.T) {
	t.Parallel()
	req, err := newASRSRequest(context.Background(), &SignalRUpstream{}, "http://h/x",
		&asrsIdentity{hub: "chat", connID: "c", userID: "u", claims: "a: b", query: "?q", signature: "sig"},
		CategoryMessages, "send", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if err := req.Write(&raw); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"X-ASRS-Connection-Id: c\r\n", "X-ASRS-Hub: chat\r\n", "X-ASRS-Category: messages\r\n",
		"X-ASRS-Event: send\r\n", "X-ASRS-User-Id: u\r\n", "X-ASRS-User-Claims: a: b\r\n", "X-ASRS-Client-Query: ?q\r\n",
		"X-ASRS-Signature: sig\r\n"} {
		if !strings.Contains(raw.String(), name) {
			t.Errorf("request lacks %q:\n%s", name, raw.String())
		}
	}
}

func TestSignalRPatternMatching(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	// Paths name the entry; first match wins.
	list := []SignalRUpstream{
		{URLTemplate: b.URL + "/admin", HubPattern: "admin"},
		{URLTemplate: b.URL + "/conn", HubPattern: "chat,news", CategoryPattern: "connections", EventPattern: "connected"},
		{URLTemplate: b.URL + "/msgs", HubPattern: " chat , news ", CategoryPattern: "messages", EventPattern: "broadcast, echo"},
		{URLTemplate: b.URL + "/any-event", HubPattern: "news", CategoryPattern: "*", EventPattern: "*"},
		{URLTemplate: b.URL + "/exact", HubPattern: "games", CategoryPattern: "messages", EventPattern: "move"},
	}
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(list...)})
	tests := []struct {
		hub, category, event string
		want                 string // path; "" = no upstream
	}{
		{"admin", "messages", "anything", "/admin"},
		{"admin", "connections", "disconnected", "/admin"},
		{"chat", "connections", "connected", "/conn"},
		{"chat", "connections", "disconnected", ""}, // /conn takes only connected
		{"news", "connections", "disconnected", "/any-event"},
		{"chat", "messages", "broadcast", "/msgs"},
		{"chat", "messages", "Echo", "/msgs"},
		{"chat", "messages", "echo2", ""},
		{"news", "messages", "echo", "/msgs"}, // before /any-event
		{"news", "messages", "other", "/any-event"},
		{"games", "messages", "move", "/exact"},
		{"games", "messages", "mov", ""},
		{"games", "connections", "connected", ""},
		{"lobby", "messages", "broadcast", ""},
	}
	for i, tt := range tests {
		name := fmt.Sprintf("%s/%s/%s", tt.hub, tt.category, tt.event)
		if got := c.HasUpstream(tt.hub, tt.category, tt.event); got != (tt.want != "") {
			t.Errorf("HasUpstream(%s) = %v", name, got)
		}
		conn := SignalRConn{Hub: tt.hub, ID: fmt.Sprint("c", i)}
		before := len(b.gotPosts())
		if tt.category == CategoryMessages {
			_, _, err := c.Invoke(context.Background(), conn, tt.event, []byte(`{}`), false)
			if tt.want == "" {
				if !errors.Is(err, ErrNoHandler) {
					t.Errorf("Invoke(%s) = %v, want ErrNoHandler", name, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Invoke(%s): %v", name, err)
			}
		} else if tt.event == EventConnected {
			c.Connected(conn)
		} else {
			c.Disconnected(conn, "")
		}
		if tt.want == "" {
			continue
		}
		eventually.True(t, name+" delivered", 10*time.Second, func() bool { return len(b.gotPosts()) == before+1 })
		if got := b.gotPosts()[before].path; got != tt.want {
			t.Errorf("%s went to %s, want %s", name, got, tt.want)
		}
	}
	// Connection events without an upstream are never sent.
	n := len(b.gotPosts())
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(b.gotPosts()); got != n {
		t.Errorf("%d events sent without a matching upstream", got-n)
	}
	// No upstreams at all.
	none, _ := newSignalRClient(t, SignalRConfig{})
	if none.HasUpstream("chat", CategoryMessages, "x") {
		t.Error("HasUpstream without upstreams")
	}
}

func TestSignalRURLEscaping(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{
		URLTemplate: b.URL + "/up/{hub}/{category}/{event}?code=k&e={event}",
	})})
	const target = "a b/c?d&e=f#g%é"
	if _, _, err := c.Invoke(context.Background(), SignalRConn{Hub: "Chat", ID: "c1"}, target, []byte(`{}`), false); err != nil {
		t.Fatal(err)
	}
	got := b.gotPosts()[0]
	const esc = "a%20b%2Fc%3Fd%26e%3Df%23g%25%C3%A9"
	if got.path != "/up/Chat/messages/"+esc {
		t.Errorf("path %s, want /up/Chat/messages/%s", got.path, esc)
	}
	if got.query != "code=k&e="+esc {
		t.Errorf("query %s, want code=k&e=%s", got.query, esc)
	}
	if ev := got.header.Get("X-ASRS-Event"); ev != target {
		t.Errorf("X-ASRS-Event = %q, want the target unescaped", ev)
	}
}

// TestSignalROrderUnderRetries: every conn's connected fails twice with 500 before it is
// taken; its disconnected still comes after it, and every attempt is counted.
func TestSignalROrderUnderRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	failures := map[string]int{}
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		id := r.Header.Get("X-ASRS-Connection-Id")
		mu.Lock()
		fail := r.Header.Get("X-ASRS-Event") == "connected" && failures[id] < 2
		if fail {
			failures[id]++
		}
		mu.Unlock()
		if fail {
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/{event}"}), Workers: 4})
	const conns = 40
	for i := range conns {
		conn := SignalRConn{Hub: "chat", ID: fmt.Sprint("c", i)}
		c.Connected(conn)
		c.Disconnected(conn, "bye")
	}
	eventually.True(t, "every attempt", 10*time.Second, func() bool { return len(b.gotPosts()) == 4*conns })
	seq := map[string][]string{}
	for _, p := range b.gotPosts() {
		id := p.header.Get("X-ASRS-Connection-Id")
		seq[id] = append(seq[id], p.header.Get("X-ASRS-Event"))
	}
	if len(seq) != conns {
		t.Fatalf("%d conns seen, want %d", len(seq), conns)
	}
	for id, s := range seq {
		if got := strings.Join(s, ","); got != "connected,connected,connected,disconnected" {
			t.Errorf("conn %s saw %s", id, got)
		}
	}
	m := c.metrics
	eventually.True(t, "the last attempt counted", 10*time.Second, func() bool {
		return counter(m.requests.WithLabelValues(kindDisconnected, "200")) == conns
	})
	for _, tt := range []struct {
		what string
		got  prometheus.Collector
		want float64
	}{
		{"requests{connected,500}", m.requests.WithLabelValues(kindConnected, "500"), 2 * conns},
		{"requests{connected,200}", m.requests.WithLabelValues(kindConnected, "200"), conns},
		{"retries{connected}", m.retries.WithLabelValues(kindConnected), 2 * conns},
		{"retries{disconnected}", m.retries.WithLabelValues(kindDisconnected), 0},
	} {
		if got := counter(tt.got); got != tt.want {
			t.Errorf("%s = %v, want %v", tt.what, got, tt.want)
		}
	}
}

func TestSignalRConnectionEventStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		attempts int
		dropped  bool
	}{
		{200, 1, false}, {204, 1, false}, {400, 1, false}, {404, 1, false},
		{408, 2, true}, {429, 2, true}, {500, 2, true}, {503, 2, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.WriteHeader(tt.status)
			})
			c, _ := newSignalRClient(t, SignalRConfig{
				Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/"}),
				Retry:     []time.Duration{time.Millisecond},
			})
			c.Connected(SignalRConn{Hub: "chat", ID: "c1"})
			if err := c.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(b.gotPosts()); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			want := 0.0
			if tt.dropped {
				want = 1
			}
			if got := counter(c.metrics.dropped.WithLabelValues(kindConnected, dropRetries)); got != want {
				t.Errorf("dropped{connected,retries_exhausted} = %v, want %v", got, want)
			}
		})
	}
}

func TestSignalRInvoke(t *testing.T) {
	t.Parallel()
	completion := []byte("{\"type\":3,\"invocationId\":\"0\",\"result\":42}\x1e")
	msgpackCompletion := []byte{0x05, 0x95, 0x03, 0x80, 0xa1, '0', 0x03, 0x2a}
	tests := []struct {
		name       string
		msgpack    bool
		body       []byte
		status     int
		respond    []byte
		wantCT     string
		wantStatus int
	}{
		{"json result", false, []byte(`{"type":1,"invocationId":"0","target":"echo","arguments":[1,"a"]}`), 200, completion, "application/json", 200},
		{"msgpack result", true, []byte{0x96, 0x01, 0x80, 0xa1, '0', 0xa4, 'e', 'c', 'h', 'o', 0x91, 0x01, 0x90}, 200, msgpackCompletion, "application/x-msgpack", 200},
		{"void 204", false, []byte(`{"type":1,"invocationId":"1","target":"echo","arguments":[]}`), 204, nil, "application/json", 204},
		{"void 200", false, []byte(`{"type":1,"invocationId":"2","target":"echo","arguments":[]}`), 200, nil, "application/json", 200},
		{"send, no id", false, []byte(`{"type":1,"target":"echo","arguments":[]}`), 202, []byte("ignored"), "application/json", 202},
		{"not found", false, []byte(`{"type":1,"invocationId":"3","target":"echo","arguments":[]}`), 404, []byte("no function"), "application/json", 404},
		{"server error", true, []byte{0x95, 0x01, 0x80, 0xc0, 0xa4, 'e', 'c', 'h', 'o', 0x90}, 500, []byte("boom"), "application/x-msgpack", 500},
	}
	var mu sync.Mutex
	responses := map[string]int{} // by body
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		i := responses[string(body)]
		mu.Unlock()
		w.WriteHeader(tests[i].status)
		w.Write(tests[i].respond)
	})
	for i, tt := range tests {
		responses[string(tt.body)] = i
	}
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/{hub}/{category}/{event}"})})
	conn := SignalRConn{Hub: "chat", ID: "c1", UserID: "bob", Claims: [][2]string{{"sub", "bob"}}}
	for i, tt := range tests {
		status, body, err := c.Invoke(context.Background(), conn, "echo", tt.body, tt.msgpack)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if status != tt.wantStatus || !bytes.Equal(body, tt.respond) {
			t.Errorf("%s: got %d %q, want %d %q", tt.name, status, body, tt.wantStatus, tt.respond)
		}
		got := b.gotPosts()[i]
		if !bytes.Equal(got.body, tt.body) {
			t.Errorf("%s: upstream got body %q, want the client's bytes %q", tt.name, got.body, tt.body)
		}
		if ct := got.header.Get("Content-Type"); ct != tt.wantCT {
			t.Errorf("%s: Content-Type %q, want %q", tt.name, ct, tt.wantCT)
		}
		if got.path != "/chat/messages/echo" || got.header.Get("X-ASRS-Category") != "messages" ||
			got.header.Get("X-ASRS-Event") != "echo" || got.header.Get("X-ASRS-User-Id") != "bob" ||
			got.header.Get("X-ASRS-User-Claims") != "sub: bob" {
			t.Errorf("%s: path %s, headers %v", tt.name, got.path, got.header)
		}
		if sig := got.header.Get("X-ASRS-Signature"); sig != asrsSig(testKey1, "c1")+","+asrsSig(testKey2, "c1") {
			t.Errorf("%s: X-ASRS-Signature %q", tt.name, sig)
		}
	}
	for _, tt := range []struct {
		status string
		want   float64
	}{{"200", 3}, {"204", 1}, {"202", 1}, {"404", 1}, {"500", 1}} {
		if got := counter(c.metrics.requests.WithLabelValues(kindInvocation, tt.status)); got != tt.want {
			t.Errorf("requests{invocation,%s} = %v, want %v", tt.status, got, tt.want)
		}
	}
	if got := counter(c.metrics.retries.WithLabelValues(kindInvocation)); got != 0 {
		t.Errorf("invocations were retried %v times", got)
	}
}

func TestSignalRInvokeTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: func(hub string) []SignalRUpstream {
		u := SignalRUpstream{URLTemplate: b.URL + "/"}
		if hub == "short" {
			u.Timeout = 20 * time.Millisecond
		}
		return []SignalRUpstream{u}
	}})
	// The entry's timeout.
	_, _, err := c.Invoke(context.Background(), SignalRConn{Hub: "short", ID: "c1"}, "slow", nil, false)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Invoke() = %v, want ErrUnavailable wrapping DeadlineExceeded", err)
	}
	// The caller's context, under the default timeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for len(b.gotPosts()) < 2 && ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	_, _, err = c.Invoke(ctx, SignalRConn{Hub: "long", ID: "c2"}, "slow", nil, false)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Invoke() = %v, want ErrUnavailable wrapping Canceled", err)
	}
	if got := counter(c.metrics.requests.WithLabelValues(kindInvocation, "error")); got != 2 {
		t.Errorf("requests{invocation,error} = %v, want 2", got)
	}
	// An unreachable upstream.
	dead, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: "http://" + deadAddr(t) + "/"})})
	if _, _, err := dead.Invoke(context.Background(), SignalRConn{Hub: "h", ID: "c3"}, "x", nil, false); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Invoke() on a dead host = %v, want ErrUnavailable", err)
	}
}

func TestSignalRInvokeResponseCap(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var status, n int
		fmt.Sscanf(string(body), "%d %d", &status, &n)
		w.WriteHeader(status)
		w.Write(bytes.Repeat([]byte{'x'}, n))
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/"})})
	tests := []struct {
		status, size int
		wantLen      int
		wantErr      error
	}{
		{200, MaxInvocationResponseBytes, MaxInvocationResponseBytes, nil},
		{200, MaxInvocationResponseBytes + 1, 0, ErrResponseTooLarge},
		{500, MaxInvocationResponseBytes + 100, MaxInvocationResponseBytes, nil}, // only the status matters
	}
	for _, tt := range tests {
		status, body, err := c.Invoke(context.Background(), SignalRConn{Hub: "h", ID: "c"}, "big",
			[]byte(fmt.Sprint(tt.status, " ", tt.size)), false)
		if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
			t.Errorf("%d×%d: err %v, want %v", tt.status, tt.size, err, tt.wantErr)
		}
		if status != tt.status || len(body) != tt.wantLen {
			t.Errorf("%d×%d: got %d with %d bytes, want %d with %d", tt.status, tt.size, status, len(body), tt.status, tt.wantLen)
		}
	}
}

func TestSignalRCloseFlushes(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		time.Sleep(time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/"}), Workers: 2})
	for i := range 20 {
		conn := SignalRConn{Hub: "chat", ID: fmt.Sprint("c", i)}
		c.Connected(conn)
		c.Disconnected(conn, "server shutting down")
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(b.gotPosts()); n != 40 {
		t.Fatalf("%d events delivered before Close returned, want 40", n)
	}
	if got := counter(c.metrics.queued); got != 0 {
		t.Errorf("queued_events = %v after Close", got)
	}
	c.Disconnected(SignalRConn{Hub: "chat", ID: "late"}, "")
	if got := counter(c.metrics.dropped.WithLabelValues(kindDisconnected, dropClosed)); got != 1 {
		t.Errorf("dropped{disconnected,closed} after Close = %v, want 1", got)
	}
	if _, _, err := c.Invoke(context.Background(), SignalRConn{Hub: "chat", ID: "late"}, "x", nil, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Invoke after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestSignalRCloseStopsEverything closes a client with a delivery in flight and a retry
// pending, and checks that it counts what it dropped and leaves no goroutine behind.
func TestSignalRCloseStopsEverything(t *testing.T) {
	// Not parallel: it counts goroutines.
	stuck := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		<-r.Context().Done()
	})
	failing := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusBadGateway)
	})
	c, err := NewSignalR(SignalRConfig{
		Keys: testKeys(t), Workers: 3, Retry: []time.Duration{time.Hour},
		Upstreams: func(hub string) []SignalRUpstream {
			if hub == "stuck" {
				return []SignalRUpstream{{URLTemplate: stuck.URL + "/"}}
			}
			return []SignalRUpstream{{URLTemplate: failing.URL + "/"}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(clientGoroutines()); n < 3 {
		t.Fatalf("%d client goroutines seen with 3 workers: the leak check below would be blind", n)
	}
	c.Connected(SignalRConn{Hub: "stuck", ID: "a"})
	c.Disconnected(SignalRConn{Hub: "stuck", ID: "a"}, "")
	c.Connected(SignalRConn{Hub: "failing", ID: "b"})
	eventually.True(t, "the stuck delivery and the retry", 10*time.Second, func() bool {
		return len(stuck.gotPosts()) == 1 && counter(c.metrics.retries.WithLabelValues(kindConnected)) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close() = %v, want DeadlineExceeded (events were pending)", err)
	}
	checkClosedClean(t, c.metrics, 3)
}

func TestSignalRQueueOverflow(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/"}), Workers: 1, QueueLimit: 2})
	var calls atomic.Int32
	done := make(chan struct{})
	go func() { // Connected never blocks, even with the only worker stuck and the queue full.
		defer close(done)
		for i := range 10 {
			c.Connected(SignalRConn{Hub: "chat", ID: fmt.Sprint("c", i)})
			calls.Add(1)
		}
	}()
	eventually.True(t, "ten calls to return", 10*time.Second, func() bool { return calls.Load() == 10 })
	<-done
	if got := counter(c.metrics.dropped.WithLabelValues(kindConnected, dropQueueFull)); got != 8 {
		t.Errorf("dropped{connected,queue_full} = %v, want 8", got)
	}
	close(release)
	eventually.True(t, "the queued events", 10*time.Second, func() bool { return len(b.gotPosts()) == 2 })
}

func TestSignalRUnsendable(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: func(hub string) []SignalRUpstream {
		if hub == "bad" {
			return []SignalRUpstream{{URLTemplate: "http://h:port/x"}}
		}
		return []SignalRUpstream{{URLTemplate: b.URL + "/"}}
	}})
	evil := SignalRConn{Hub: "chat", ID: "c1", Claims: [][2]string{{"name", "x\r\nX-Injected: 1"}}}
	c.Connected(evil)
	c.Disconnected(SignalRConn{Hub: "bad", ID: "c2"}, "")
	c.Connected(SignalRConn{Hub: "chat", ID: "c3"})
	_, _, err := c.Invoke(context.Background(), evil, "send", nil, false)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Invoke with a bad claim = %v, want ErrUnavailable", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := counter(c.metrics.dropped.WithLabelValues(kindConnected, dropInvalid)); got != 1 {
		t.Errorf("dropped{connected,invalid} = %v, want 1", got)
	}
	if got := counter(c.metrics.dropped.WithLabelValues(kindDisconnected, dropInvalid)); got != 1 {
		t.Errorf("dropped{disconnected,invalid} = %v, want 1", got)
	}
	if posts := b.gotPosts(); len(posts) != 1 || posts[0].header.Get("X-ASRS-Connection-Id") != "c3" {
		t.Errorf("%d posts, want only c3's", len(posts))
	}
}

func TestSignalRConfigAndMetrics(t *testing.T) {
	t.Parallel()
	if _, err := NewSignalR(SignalRConfig{}); err == nil || !strings.Contains(err.Error(), "Keys is required") {
		t.Errorf("NewSignalR without keys = %v", err)
	}
	for _, cfg := range []SignalRConfig{{QueueLimit: -1}, {Workers: -1}, {Retry: []time.Duration{-time.Second}}} {
		cfg.Keys = testKeys(t)
		if _, err := NewSignalR(cfg); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("NewSignalR(%+v) = %v, want a negative-value error", cfg, err)
		}
	}

	// Both protocols and two SignalR clients on one registry, each with its own families.
	b := newBackend(t, nil)
	reg := prometheus.NewRegistry()
	wps, err := New(Config{Keys: testKeys(t), Origin: testOrigin, Handlers: handlers(b.handler("/")), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	wps.Connected(Conn{Hub: "chat", ID: "w1"})
	if err := wps.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ := newSignalRClient(t, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: b.URL + "/"}), Registerer: reg})
	c2, _ := newSignalRClient(t, SignalRConfig{Registerer: reg, Workers: 1})
	if c2.metrics.requests != c.metrics.requests {
		t.Error("two SignalR clients on one registry do not share their metrics")
	}
	if _, _, err := c.Invoke(context.Background(), SignalRConn{Hub: "chat", ID: "c1"}, "send", nil, false); err != nil {
		t.Fatal(err)
	}
	c.Connected(SignalRConn{Hub: "chat", ID: "c1"})
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
		if !strings.HasPrefix(f.GetName(), "switchboard_upstream_signalr_") {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "event" && l.GetValue() == kindInvocation {
						t.Errorf("SignalR invocation counted in the Web PubSub family %s", f.GetName())
					}
				}
			}
		}
	}
	for _, want := range []string{
		"switchboard_upstream_signalr_requests_total", "switchboard_upstream_signalr_request_duration_seconds",
		"switchboard_upstream_signalr_queued_events",
	} {
		if !names[want] {
			t.Errorf("metric %s not exported", want)
		}
	}
	if names["switchboard_upstream_signalr_validation_failures_total"] {
		t.Error("SignalR exports an abuse-protection metric it never uses")
	}
}

func BenchmarkSignalRInvoke(b *testing.B) {
	be := newBackend(b, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Write([]byte("{\"type\":3,\"invocationId\":\"0\",\"result\":1}\x1e"))
	})
	c, _ := newSignalRClient(b, SignalRConfig{Upstreams: upstreams(SignalRUpstream{URLTemplate: be.URL + "/{hub}/{category}/{event}"})})
	conn := SignalRConn{Hub: "chat", ID: "node1_abcdefghijklmnopqrstuv", UserID: "u", Claims: [][2]string{{"sub", "u"}}}
	body := []byte(`{"type":1,"invocationId":"0","target":"echo","arguments":[1]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.Invoke(context.Background(), conn, "echo", body, false); err != nil {
			b.Fatal(err)
		}
	}
}
