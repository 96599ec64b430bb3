package ratelimit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

func newLimiter(t *testing.T, cfg Config) (*Limiter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

func request(remote string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/client/hubs/h", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

// admit runs Admit and returns the slot and the answer it wrote, if any.
func admit(l *Limiter, r *http.Request) (*Slot, *httptest.ResponseRecorder) {
	w := httptest.NewRecorder()
	s, ok := l.Admit(w, r)
	if ok {
		return s, nil
	}
	return nil, w
}

func TestHandshakeRateBurstThenRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, reg := newLimiter(t, Config{HandshakeRate: 2, HandshakeBurst: 3})
		for i := range 3 {
			if _, w := admit(l, request("10.0.0.1:1000")); w != nil {
				t.Fatalf("attempt %d of the burst refused: %d %s", i+1, w.Code, w.Body)
			}
		}
		_, w := admit(l, request("10.0.0.1:1001"))
		if w == nil || w.Code != http.StatusTooManyRequests {
			t.Fatalf("4th attempt in a burst of 3: %v, want 429", w)
		}
		if got := w.Header().Get("Retry-After"); got != "1" { // one token at 2/s: 500 ms, rounded up
			t.Fatalf("Retry-After = %q, want 1", got)
		}
		if body := w.Body.String(); !strings.Contains(body, "limits.ip_handshake_rate") {
			t.Fatalf("body %q does not name the limit", body)
		}
		if _, w := admit(l, request("10.0.0.2:1000")); w != nil {
			t.Fatalf("another address was refused: %s", w.Body)
		}
		time.Sleep(500 * time.Millisecond) // one token back
		if _, w := admit(l, request("10.0.0.1:1002")); w != nil {
			t.Fatalf("refused after the bucket refilled a token: %s", w.Body)
		}
		if _, w := admit(l, request("10.0.0.1:1003")); w == nil {
			t.Fatal("a second attempt on one refilled token was admitted")
		}
		if got := metrictest.Value(t, reg, "switchboard_ratelimit_refusals_total", "limit", LimitHandshakeRate); got != 2 {
			t.Fatalf("handshake_rate refusals = %v, want 2", got)
		}
	})
}

func TestMaxConnsPerIP(t *testing.T) {
	l, reg := newLimiter(t, Config{MaxConns: 2})
	a, w1 := admit(l, request("10.0.0.1:1"))
	b, w2 := admit(l, request("10.0.0.1:2"))
	if w1 != nil || w2 != nil || a == nil || b == nil {
		t.Fatal("the first two connections were refused")
	}
	_, w := admit(l, request("10.0.0.1:3"))
	if w == nil || w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("third connection: %v, want 429 with Retry-After", w)
	}
	if !strings.Contains(w.Body.String(), "limits.ip_max_connections") {
		t.Fatalf("body %q does not name the limit", w.Body)
	}
	if c, w := admit(l, request("10.0.0.2:1")); w != nil || c == nil {
		t.Fatal("another address was refused")
	}
	a.Release()
	a.Release() // twice: counted once
	if _, w := admit(l, request("10.0.0.1:4")); w != nil {
		t.Fatalf("refused after a connection ended: %s", w.Body)
	}
	if _, w := admit(l, request("10.0.0.1:5")); w == nil {
		t.Fatal("a double Release freed two places")
	}
	if got := metrictest.Value(t, reg, "switchboard_ratelimit_refusals_total", "limit", LimitIPConnections); got != 2 {
		t.Fatalf("ip_connections refusals = %v, want 2", got)
	}
}

// Opening and closing connections, with refusals and moved slots among them,
// leaves no count behind and, once the buckets refill, no entry either.
func TestOpenCloseCyclesReturnToZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newLimiter(t, Config{MaxConns: 3, HandshakeRate: 1000, HandshakeBurst: 1000})
		for round := range 50 {
			var slots []*Slot
			for i := range 5 { // two of five refused
				s, _ := admit(l, request(fmt.Sprintf("10.0.%d.%d:1", round%3, i%2)))
				if i%2 == 0 {
					s = s.Move() // handed on, as an endpoint does to its session
				}
				slots = append(slots, s)
			}
			for _, s := range slots {
				s.Release()
			}
			if _, conns := l.Tracked(); conns != 0 {
				t.Fatalf("round %d: %d connections still counted after every one ended", round, conns)
			}
		}
		time.Sleep(2 * time.Second) // every bucket is full again
		admit(l, request("10.9.9.9:1"))
		if ips, _ := l.Tracked(); ips != 1 {
			t.Fatalf("%d addresses tracked after every other one went idle and refilled, want 1 (the new one)", ips)
		}
	})
}

// Only the connection count: an address without connections is forgotten at
// once.
func TestConnsOnlyForgetsIdleAtOnce(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConns: 1})
	for i := range 1000 {
		s, w := admit(l, request(fmt.Sprintf("10.%d.%d.1:1", i/256, i%256)))
		if w != nil {
			t.Fatalf("refused: %s", w.Body)
		}
		s.Release()
	}
	if ips, conns := l.Tracked(); ips != 0 || conns != 0 {
		t.Fatalf("tracked %d addresses, %d connections after all ended, want 0 and 0", ips, conns)
	}
}

// An attacker with many source addresses cannot grow the table past
// MaxTracked, nor memory with it.
func TestTrackedIPsBounded(t *testing.T) {
	const bound = 1000
	l, reg := newLimiter(t, Config{HandshakeRate: 1, HandshakeBurst: 5, MaxTracked: bound})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := request("")
	for i := range 100_000 {
		r.RemoteAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1).String()
		if _, w := admit(l, r); w != nil {
			t.Fatalf("address %d refused: %s", i, w.Body)
		}
		if i%10_000 == 0 {
			if ips, _ := l.Tracked(); ips > bound {
				t.Fatalf("after %d addresses, %d are tracked: more than the bound %d", i+1, ips, bound)
			}
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// 1,000 entries take some 300 KB; 100,000 kept take about 21 MB.
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d bytes for 100,000 addresses with the table bounded at %d", grown, bound)
	if grown > 8<<20 {
		t.Errorf("heap grew by %d bytes for a table bounded at %d entries", grown, bound)
	}
	if ips, _ := l.Tracked(); ips != bound {
		t.Fatalf("%d addresses tracked, want the bound %d", ips, bound)
	}
	if got := metrictest.Value(t, reg, "switchboard_ratelimit_tracked_ips"); got != bound {
		t.Fatalf("tracked_ips gauge = %v, want %d", got, bound)
	}
	runtime.KeepAlive(l)
}

// When every tracked address holds a connection, a new address is refused
// (503) rather than tracked beyond the bound or let through uncounted.
func TestTrackedIPsFullOfConnections(t *testing.T) {
	l, reg := newLimiter(t, Config{MaxConns: 5, MaxTracked: 3})
	var slots []*Slot
	for i := range 3 {
		s, w := admit(l, request(fmt.Sprintf("10.0.0.%d:1", i)))
		if w != nil {
			t.Fatal(w.Body)
		}
		slots = append(slots, s)
	}
	_, w := admit(l, request("10.0.0.99:1"))
	if w == nil || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("new address with a full table: %v, want 503 with Retry-After", w)
	}
	if _, w := admit(l, request("10.0.0.1:2")); w != nil {
		t.Fatalf("a tracked address was refused: %s", w.Body)
	}
	slots[0].Release()
	if _, w := admit(l, request("10.0.0.99:1")); w != nil {
		t.Fatalf("refused after a tracked address went idle: %s", w.Body)
	}
	if got := metrictest.Value(t, reg, "switchboard_ratelimit_refusals_total", "limit", LimitTrackedIPs); got != 1 {
		t.Fatalf("tracked_ips refusals = %v, want 1", got)
	}
}

func TestClientIP(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConns: 1, TrustedHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::1/128")}})
	tests := []struct {
		name   string
		remote string
		header []string
		want   string
	}{
		{"no header", "192.0.2.1:5", nil, "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:5", []string{"X-Forwarded-For", "203.0.113.9"}, "192.0.2.1"},
		{"trusted proxy", "10.1.2.3:5", []string{"X-Forwarded-For", "203.0.113.9"}, "203.0.113.9"},
		{"client's own entry on the left ignored", "10.1.2.3:5", []string{"X-Forwarded-For", "6.6.6.6, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", "10.1.2.3:5", []string{"X-Forwarded-For", "203.0.113.9, 10.1.9.9"}, "203.0.113.9"},
		{"several header lines", "10.1.2.3:5", []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "203.0.113.9, 10.1.9.9"}, "203.0.113.9"},
		{"garbage stops at the last address", "10.1.2.3:5", []string{"X-Forwarded-For", "203.0.113.9, nonsense, 10.1.9.9"}, "10.1.9.9"},
		{"empty header", "10.1.2.3:5", []string{"X-Forwarded-For", ""}, "10.1.2.3"},
		{"hop with a port", "10.1.2.3:5", []string{"X-Forwarded-For", "203.0.113.9:4711"}, "203.0.113.9"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:5", []string{"X-Forwarded-For", "203.0.113.9"}, "203.0.113.9"},
		{"IPv6 cut to /64", "[2001:db8:1:2:aaaa::1]:5", nil, "2001:db8:1:2::"},
		{"IPv6 client behind a proxy", "[::1]:5", []string{"X-Forwarded-For", "2001:db8:1:2:bbbb::7"}, "2001:db8:1:2::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.ClientIP(request(tt.remote, tt.header...)); got.String() != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTrustedHeaderNeedsProxies(t *testing.T) {
	if _, err := New(Config{TrustedHeader: "X-Real-IP"}); err == nil {
		t.Fatal("a trusted header without trusted proxies was accepted: any client could pick its own address")
	}
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, reg := newLimiter(t, Config{MessageRate: 10, MessageBurst: 5})
		b := l.Budget()
		for i := range 5 {
			if v := b.Take(); v != Allow {
				t.Fatalf("message %d of the burst: verdict %d", i+1, v)
			}
		}
		for i := range MinRefusals {
			if v := b.Take(); v != Refuse {
				t.Fatalf("refusal %d: verdict %d, want Refuse", i+1, v)
			}
		}
		if v := b.Take(); v != Close {
			t.Fatalf("refusal %d in a row: verdict %d, want Close", MinRefusals+1, v)
		}
		if got := metrictest.Value(t, reg, "switchboard_ratelimit_refusals_total", "limit", LimitMessageRate); got != MinRefusals+1 {
			t.Fatalf("message_rate refusals = %v, want %d", got, MinRefusals+1)
		}
		if got := metrictest.Value(t, reg, "switchboard_ratelimit_closes_total"); got != 1 {
			t.Fatalf("closes = %v, want 1", got)
		}
	})
}

// A client at twice the rate is refused every other message and closed once
// it has been over the limit for Persist; one that pauses is forgiven.
func TestBudgetPersistence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, _ := newLimiter(t, Config{MessageRate: 10, MessageBurst: 1})
		b := l.Budget()
		var refused int
		start := time.Now()
		for {
			v := b.Take()
			if v == Close {
				break
			}
			if v == Refuse {
				refused++
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("a client at twice the rate was never closed")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d := time.Since(start); d < Persist || d > Persist+200*time.Millisecond {
			t.Fatalf("closed after %v of sending at twice the rate, want about %v", d, Persist)
		}
		if refused == 0 || refused > MinRefusals {
			t.Fatalf("%d refusals before the close", refused)
		}

		b = l.Budget()
		for range 3 { // bursts of 3 with a pause of Persist: never closed
			for range 3 {
				if b.Take() == Close {
					t.Fatal("a client that pauses between small bursts was closed")
				}
			}
			time.Sleep(Persist)
		}
	})
}

func TestNilLimiterAndBudgetAllow(t *testing.T) {
	var l *Limiter
	w := httptest.NewRecorder()
	if s, ok := l.Admit(w, request("10.0.0.1:1")); !ok || s != nil {
		t.Fatal("a nil limiter refused")
	}
	if !l.AdmitRate(w, request("10.0.0.1:1")) || l.Budget().Take() != Allow {
		t.Fatal("a nil limiter refused")
	}
	var s *Slot
	s.Release()
	if s.Move() != nil {
		t.Fatal("Move of a nil slot")
	}
}

// The defaults (every limit off) let everything through and track nothing.
func TestZeroConfigAllowsEverything(t *testing.T) {
	l, _ := newLimiter(t, Config{})
	w := httptest.NewRecorder()
	for range 1000 {
		s, ok := l.Admit(w, request("10.0.0.1:1"))
		if !ok || !l.AdmitRate(w, request("10.0.0.1:1")) {
			t.Fatalf("refused with every limit off: %d %s", w.Code, w.Body)
		}
		if s != nil {
			t.Fatal("a slot handed out with no connection limit")
		}
	}
	if ips, _ := l.Tracked(); ips != 0 {
		t.Fatalf("%d addresses tracked with every limit off", ips)
	}
	if b := l.Budget(); b != nil || b.Take() != Allow {
		t.Fatal("a message budget with no message rate")
	}
}
