package ratelimit

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// TestClientIPForwarded: limits.trusted_proxy_header may be Forwarded (RFC 7239), whose
// elements are "for=<address>;proto=…". Before, its entries were read as bare addresses:
// none parsed, so every client behind the proxy was counted as the proxy itself, and one
// client's handshakes used up everyone's rate.
func TestClientIPForwarded(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConns: 1, TrustedHeader: "forwarded",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	tests := []struct {
		name, value, want string
	}{
		{"one element", "for=203.0.113.9;proto=https", "203.0.113.9"},
		{"quoted IPv6 with a port", `for="[2001:db8:1:2::7]:4711"`, "2001:db8:1:2::"},
		{"quoted IPv6 without a port", `for="[2001:db8:1:2::7]"`, "2001:db8:1:2::"},
		{"by and proto around for", "by=10.1.0.1;For=203.0.113.9;proto=http", "203.0.113.9"},
		{"client's own element on the left ignored", "for=6.6.6.6, for=203.0.113.9", "203.0.113.9"},
		{"chain of trusted proxies", "for=203.0.113.9, for=10.1.9.9", "203.0.113.9"},
		{"obfuscated hop: the last address before it", "for=_hidden, for=10.1.9.9", "10.1.9.9"},
		{"no for: the peer", "proto=https", "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.ClientIP(request("10.1.2.3:5", "Forwarded", tt.value)); got.String() != tt.want {
				t.Fatalf("ClientIP with Forwarded: %s = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}

// TestClientIPLongHeaderAllocatesNothing: reading a forwarding header of thousands of
// entries (the header cap allows ~64 KiB) allocates nothing per request. Before, the
// header was split into a slice of all its entries first.
func TestClientIPLongHeaderAllocatesNothing(t *testing.T) {
	l, _ := newLimiter(t, Config{MaxConns: 1, TrustedHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	r := request("10.1.2.3:5", "X-Forwarded-For", strings.Repeat("6.6.6.6, ", 6000)+"203.0.113.9")
	if got := l.ClientIP(r); got.String() != "203.0.113.9" {
		t.Fatalf("ClientIP = %s", got)
	}
	if n := testing.AllocsPerRun(20, func() { l.ClientIP(r) }); n != 0 {
		t.Fatalf("ClientIP of a long header: %v allocations per call, want 0", n)
	}
}

// FuzzClientIP: whatever a trusted proxy's header holds, ClientIP does not panic and
// returns the peer or an address the header names, cut to its /64 when IPv6, with no
// zone; from an untrusted peer, the header is not looked at.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"203.0.113.9", "6.6.6.6, 203.0.113.9", "for=203.0.113.9;proto=https",
		`for="[2001:db8::1]:80", for=10.1.9.9`, "fe80::1%eth0", "[::1]:5", ", ,", "::ffff:10.1.0.1", "for=\"", "[]"} {
		f.Add(s, "10.1.2.3:5", false)
		f.Add(s, "[2001:db8::5]:1", true)
	}
	xff, _ := New(Config{MaxConns: 1, TrustedHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/64")}})
	fwd, _ := New(Config{MaxConns: 1, TrustedHeader: "Forwarded",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/64")}})
	f.Fuzz(func(t *testing.T, value, remote string, rfc7239 bool) {
		l, name := xff, "X-Forwarded-For"
		if rfc7239 {
			l, name = fwd, "Forwarded"
		}
		r := request(remote, name, value)
		got := l.ClientIP(r)
		if got.Zone() != "" {
			t.Fatalf("ClientIP = %s: a zone", got)
		}
		if got.Is4In6() {
			t.Fatalf("ClientIP = %s: not unmapped", got)
		}
		if got.Is6() {
			if p, _ := got.Prefix(64); p.Addr() != got {
				t.Fatalf("ClientIP = %s: not cut to its /64", got)
			}
		}
		peer := l.ClientIP(request(remote))
		if !l.trusted(peerAddr(remote)) && got != peer {
			t.Fatalf("ClientIP = %s from an untrusted peer %s (%s)", got, remote, peer)
		}
		if got != peer && value == "" {
			t.Fatalf("ClientIP = %s, not the peer %s, from an empty header", got, peer)
		}
	})
}

// TestAdmitConnCountsWithoutToken: AdmitConn (a negotiated SignalR transport) holds a
// connection place but spends no handshake token.
func TestAdmitConnCountsWithoutToken(t *testing.T) {
	l, _ := newLimiter(t, Config{HandshakeRate: 0.001, HandshakeBurst: 1, MaxConns: 1})
	w := httptest.NewRecorder()
	s, ok := l.AdmitConn(w, request("10.0.0.1:1"))
	if !ok || s == nil {
		t.Fatalf("AdmitConn refused: %d %s", w.Code, w.Body)
	}
	if _, ok := l.AdmitConn(httptest.NewRecorder(), request("10.0.0.1:2")); ok {
		t.Fatal("a second connection admitted over limits.ip_max_connections 1")
	}
	s.Release()
	if !l.AdmitRate(httptest.NewRecorder(), request("10.0.0.1:3")) {
		t.Fatal("the handshake token was spent by AdmitConn")
	}
}
