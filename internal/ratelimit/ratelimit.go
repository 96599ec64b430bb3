package ratelimit

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Config sets the limits. Zero values mean "no limit" for the limits and
// the documented default for the bounds.
type Config struct {
	// HandshakeRate is the connection attempts per second one client IP may
	// make, refilled continuously; 0: unlimited.
	HandshakeRate float64
	// HandshakeBurst is how many attempts an IP may make at once; 0: the
	// rate rounded up, at least 1.
	HandshakeBurst int
	// MaxConns is the concurrent connections one client IP may hold; 0:
	// unlimited.
	MaxConns int
	// MaxTracked bounds the client IPs tracked at once; 0: 100,000.
	MaxTracked int

	// TrustedHeader names a header that carries the client's address as a
	// proxy saw it (X-Forwarded-For, X-Real-IP, ...). It is read only on
	// requests whose peer is in TrustedProxies; "" reads no header.
	TrustedHeader  string
	TrustedProxies []netip.Prefix

	// MessageRate is the inbound messages per second one connection may
	// send; 0: unlimited. MessageBurst is how many at once; 0: the rate
	// rounded up, at least 1.
	MessageRate  float64
	MessageBurst int

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // default: a private registry
}

// Limit names, the values of the metrics' limit label.
const (
	LimitHandshakeRate = "handshake_rate"
	LimitIPConnections = "ip_connections"
	LimitTrackedIPs    = "tracked_ips"
	LimitMessageRate   = "message_rate"
)

// DefaultMaxTracked is the bound of the per-IP table when Config sets none.
const DefaultMaxTracked = 100_000

// A connection whose messages keep being refused is closed: once it has
// been refused Persist after its first refusal with no pause of Persist in
// between, or refused more than max(MinRefusals, burst) times in such a run.
const (
	Persist     = time.Second
	MinRefusals = 10
)

// connRetryAfter is the Retry-After of a refusal for too many concurrent
// connections: when one of them ends is not known.
const connRetryAfter = 5 * time.Second

// Limiter applies the per-IP limits and hands out per-connection budgets.
// A nil *Limiter limits nothing.
type Limiter struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	refill  time.Duration // how long an empty handshake bucket takes to fill
	rfc7239 bool          // the trusted header is Forwarded: its entries are for= parameters

	mu  sync.Mutex
	ips map[netip.Addr]*entry
	// idle lists the entries without an open connection, most recently
	// seen first; root.next is the newest, root.prev the oldest.
	idle entry
}

// entry is one tracked client IP (or IPv6 /64).
type entry struct {
	key        netip.Addr
	bucket     *rate.Limiter // nil without a handshake rate
	conns      int
	last       time.Time
	prev, next *entry // in the idle list while conns == 0
}

type metrics struct {
	refusals *prometheus.CounterVec
	closes   prometheus.Counter
	tracked  prometheus.Gauge
}

// New returns a limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if cfg.HandshakeRate < 0 || cfg.MessageRate < 0 || cfg.HandshakeBurst < 0 || cfg.MessageBurst < 0 || cfg.MaxConns < 0 || cfg.MaxTracked < 0 {
		return nil, errors.New("ratelimit: rates, bursts and counts must not be negative")
	}
	if cfg.TrustedHeader != "" && len(cfg.TrustedProxies) == 0 {
		return nil, errors.New("ratelimit: a trusted proxy header needs the trusted proxies it is read from")
	}
	cfg.HandshakeBurst = burst(cfg.HandshakeRate, cfg.HandshakeBurst)
	cfg.MessageBurst = burst(cfg.MessageRate, cfg.MessageBurst)
	if cfg.MaxTracked == 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m := &metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "ratelimit", Name: "refusals_total",
			Help: "Client requests and messages refused by a rate limit, by limit (handshake_rate, ip_connections, tracked_ips, message_rate)."}, []string{"limit"}),
		closes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "ratelimit", Name: "closes_total",
			Help: "Connections closed for staying over limits.conn_message_rate."}),
		tracked: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "switchboard", Subsystem: "ratelimit", Name: "tracked_ips",
			Help: "Client IPs (IPv6: /64 prefixes) the per-IP limits track."}),
	}
	var err error
	if m.refusals, err = metricreg.Register(cfg.Registerer, "ratelimit", m.refusals); err != nil {
		return nil, err
	}
	if m.closes, err = metricreg.Register(cfg.Registerer, "ratelimit", m.closes); err != nil {
		return nil, err
	}
	if m.tracked, err = metricreg.Register(cfg.Registerer, "ratelimit", m.tracked); err != nil {
		return nil, err
	}
	l := &Limiter{cfg: cfg, log: cfg.Logger, metrics: m, ips: make(map[netip.Addr]*entry),
		rfc7239: http.CanonicalHeaderKey(cfg.TrustedHeader) == "Forwarded"}
	if cfg.HandshakeRate > 0 {
		l.refill = time.Duration(float64(cfg.HandshakeBurst) / cfg.HandshakeRate * float64(time.Second))
	}
	l.idle.next, l.idle.prev = &l.idle, &l.idle
	return l, nil
}

func burst(r float64, b int) int {
	if r > 0 && b == 0 {
		return max(1, int(math.Ceil(r)))
	}
	return b
}

// Refusal is why a request was refused.
type Refusal struct {
	Limit      string // one of the Limit… names
	Status     int    // 429, or 503 when the table of IPs is full
	RetryAfter time.Duration
	Message    string
}

// Write answers the request: the status, Retry-After in whole seconds (at
// least 1) and the message as plain text.
func (f *Refusal) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(f.RetryAfter.Seconds())))))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(f.Status)
	fmt.Fprintln(w, f.Message)
}

// Slot is one open connection's place in its client IP's count. Release
// gives it back; it is safe to call more than once and on a nil Slot.
type Slot struct {
	l    *Limiter
	e    *entry
	held atomic.Bool
}

// Release gives the slot back (once).
func (s *Slot) Release() {
	if s == nil || !s.held.CompareAndSwap(true, false) {
		return
	}
	s.l.release(s.e)
}

// Move returns a slot that owns s's place and leaves s empty, so that a
// handler that hands its connection on can still defer s.Release for its
// own early returns.
func (s *Slot) Move() *Slot {
	if s == nil || !s.held.CompareAndSwap(true, false) {
		return nil
	}
	n := &Slot{l: s.l, e: s.e}
	n.held.Store(true)
	return n
}

// Admit checks a request that opens a connection against its client IP's
// handshake rate and connection count. When it refuses, it has answered the
// request and returns false. Otherwise the returned slot (nil when
// connections are not counted) must be released when the connection ends.
func (l *Limiter) Admit(w http.ResponseWriter, r *http.Request) (*Slot, bool) {
	if l == nil || (l.cfg.HandshakeRate == 0 && l.cfg.MaxConns == 0) {
		return nil, true
	}
	return l.admitSlot(w, r, true)
}

// AdmitConn checks a request that opens a connection against its client IP's
// connection count only, not the handshake rate: for the transport of a
// SignalR connection whose negotiate spent the attempt's token.
func (l *Limiter) AdmitConn(w http.ResponseWriter, r *http.Request) (*Slot, bool) {
	if l == nil || l.cfg.MaxConns == 0 {
		return nil, true
	}
	return l.admitSlot(w, r, false)
}

func (l *Limiter) admitSlot(w http.ResponseWriter, r *http.Request, rated bool) (*Slot, bool) {
	e, f := l.admit(l.ClientIP(r), time.Now(), rated, l.cfg.MaxConns > 0)
	if f != nil {
		l.refuse(w, r, f)
		return nil, false
	}
	if e == nil {
		return nil, true
	}
	s := &Slot{l: l, e: e}
	s.held.Store(true)
	return s, true
}

// AdmitRate checks a request that opens no connection (SignalR's
// negotiate) against its client IP's handshake rate only.
func (l *Limiter) AdmitRate(w http.ResponseWriter, r *http.Request) bool {
	if l == nil || l.cfg.HandshakeRate == 0 {
		return true
	}
	if _, f := l.admit(l.ClientIP(r), time.Now(), true, false); f != nil {
		l.refuse(w, r, f)
		return false
	}
	return true
}

func (l *Limiter) refuse(w http.ResponseWriter, r *http.Request, f *Refusal) {
	l.metrics.refusals.WithLabelValues(f.Limit).Inc()
	l.log.Debug("request refused by a rate limit", "limit", f.Limit, "remote", r.RemoteAddr, "path", r.URL.Path)
	f.Write(w)
}

// admit takes, with rated, a handshake token for ip and, with count, one of
// its connection places; it returns the entry that holds the place.
func (l *Limiter) admit(ip netip.Addr, now time.Time, rated, count bool) (*entry, *Refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	e := l.ips[ip]
	if e == nil {
		if len(l.ips) >= l.cfg.MaxTracked {
			if l.idle.prev == &l.idle {
				return nil, &Refusal{Limit: LimitTrackedIPs, Status: http.StatusServiceUnavailable, RetryAfter: connRetryAfter,
					Message: "too many client addresses are connected (limits.ip_max_tracked); try again later"}
			}
			l.forget(l.idle.prev) // the least recently seen idle address
		}
		e = &entry{key: ip}
		if l.cfg.HandshakeRate > 0 {
			e.bucket = rate.NewLimiter(rate.Limit(l.cfg.HandshakeRate), l.cfg.HandshakeBurst)
		}
		l.ips[ip] = e
		l.metrics.tracked.Inc()
		l.pushIdle(e)
	}
	e.last = now
	if e.conns == 0 {
		l.unlinkIdle(e)
		l.pushIdle(e)
	}
	if count && e.conns >= l.cfg.MaxConns {
		l.dropIfUseless(e)
		return nil, &Refusal{Limit: LimitIPConnections, Status: http.StatusTooManyRequests, RetryAfter: connRetryAfter,
			Message: fmt.Sprintf("too many concurrent connections from this address (limits.ip_max_connections is %d)", l.cfg.MaxConns)}
	}
	if rated && e.bucket != nil {
		res := e.bucket.ReserveN(now, 1)
		if d := res.DelayFrom(now); d > 0 {
			res.CancelAt(now)
			return nil, &Refusal{Limit: LimitHandshakeRate, Status: http.StatusTooManyRequests, RetryAfter: d,
				Message: fmt.Sprintf("too many connection attempts from this address (limits.ip_handshake_rate is %g/s, burst %d)", l.cfg.HandshakeRate, l.cfg.HandshakeBurst)}
		}
	}
	if !count {
		l.dropIfUseless(e)
		return nil, nil
	}
	if e.conns == 0 {
		l.unlinkIdle(e)
	}
	e.conns++
	return e, nil
}

// release gives back one of e's connection places.
func (l *Limiter) release(e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.conns--
	if e.conns > 0 {
		return
	}
	e.last = time.Now()
	l.pushIdle(e)
	l.dropIfUseless(e)
}

// dropIfUseless forgets an idle entry that holds nothing: no connection and
// no handshake bucket.
func (l *Limiter) dropIfUseless(e *entry) {
	if e.conns == 0 && e.bucket == nil {
		l.forget(e)
	}
}

// expire forgets the idle entries whose buckets have filled up again: a
// new entry would behave the same.
func (l *Limiter) expire(now time.Time) {
	for e := l.idle.prev; e != &l.idle && now.Sub(e.last) >= l.refill; e = l.idle.prev {
		l.forget(e)
	}
}

func (l *Limiter) forget(e *entry) {
	l.unlinkIdle(e)
	delete(l.ips, e.key)
	l.metrics.tracked.Dec()
}

func (l *Limiter) pushIdle(e *entry) {
	e.prev, e.next = &l.idle, l.idle.next
	l.idle.next.prev = e
	l.idle.next = e
}

func (l *Limiter) unlinkIdle(e *entry) {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// Tracked returns how many client IPs are tracked, and how many connections
// they hold in all.
func (l *Limiter) Tracked() (ips, conns int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.ips {
		conns += e.conns
	}
	return len(l.ips), conns
}

// ClientIP returns the key the per-IP limits count r under: the peer's
// address or, from a trusted proxy, the client address its header names;
// an IPv6 address is cut to its /64.
func (l *Limiter) ClientIP(r *http.Request) netip.Addr {
	ip := peerAddr(r.RemoteAddr)
	if l.cfg.TrustedHeader != "" && l.trusted(ip) {
		ip = l.forwarded(r.Header.Values(l.cfg.TrustedHeader), ip)
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(remote) // the zero Addr for what is not one: all such peers share an entry
	return a.Unmap()
}

func (l *Limiter) trusted(ip netip.Addr) bool {
	for _, p := range l.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwarded returns the client address of a forwarding header's values:
// read from the right (the hop nearest to us), the first address that is
// not a trusted proxy. A client can put anything on the left of the list;
// only what trusted proxies appended is believed. An entry that is not an
// address ends the walk at the last one that was. The entries are those of
// X-Forwarded-For and the like (an address), or of Forwarded (RFC 7239: the
// address of their for= parameter). The walk allocates nothing, whatever
// the length of the header.
func (l *Limiter) forwarded(values []string, peer netip.Addr) netip.Addr {
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for {
			j := strings.LastIndexByte(rest, ',')
			hop := rest[j+1:]
			if l.rfc7239 {
				hop = forParam(hop)
			}
			ip, ok := parseHop(strings.TrimSpace(hop))
			if !ok {
				return client
			}
			client = ip
			if !l.trusted(ip) {
				return client
			}
			if j < 0 {
				break
			}
			rest = rest[:j]
		}
	}
	return client
}

// forParam returns the value of the for= parameter of one element of a
// Forwarded header ("for=192.0.2.60;proto=http", `for="[2001:db8::1]:80"`),
// unquoted; "" when it has none.
func forParam(elem string) string {
	for elem != "" {
		var pair string
		pair, elem, _ = strings.Cut(elem, ";")
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(strings.TrimSpace(name), "for") {
			value = strings.TrimSpace(value)
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			return value
		}
	}
	return ""
}

// parseHop reads one address of a forwarding header: a bare IPv4 or IPv6
// address, or one with a port ("1.2.3.4:5", "[::1]:5") or in brackets
// ("[::1]"). A zone ("fe80::1%eth0") is not an address of the Internet:
// refused.
func parseHop(s string) (netip.Addr, bool) {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap(), true
}

// Verdict is what a Budget says of one message.
type Verdict uint8

const (
	Allow  Verdict = iota // within the rate
	Refuse                // over the rate: refuse or drop the message
	Close                 // over the rate for too long: close the connection
)

// Budget is one connection's inbound message rate. A nil Budget allows
// everything. It is not safe for concurrent use: the dialects take from it
// on the connection's one reading path.
type Budget struct {
	bucket   *rate.Limiter
	maxRun   int
	metrics  *metrics
	runStart time.Time // first refusal of the current run
	last     time.Time // last refusal
	refused  int       // refusals in the current run
}

// Budget returns a message budget for a new (authenticated) connection,
// nil when messages are not limited.
func (l *Limiter) Budget() *Budget {
	if l == nil || l.cfg.MessageRate == 0 {
		return nil
	}
	return &Budget{bucket: rate.NewLimiter(rate.Limit(l.cfg.MessageRate), l.cfg.MessageBurst),
		maxRun: max(MinRefusals, l.cfg.MessageBurst), metrics: l.metrics}
}

// Take spends one message and says whether it may go on. Refusals are
// counted; so is the Close verdict, after which the caller closes.
func (b *Budget) Take() Verdict {
	if b == nil {
		return Allow
	}
	now := time.Now()
	if b.bucket.AllowN(now, 1) {
		return Allow
	}
	b.metrics.refusals.WithLabelValues(LimitMessageRate).Inc()
	if b.refused == 0 || now.Sub(b.last) >= Persist {
		b.runStart, b.refused = now, 0
	}
	b.refused++
	b.last = now
	if b.refused > b.maxRun || now.Sub(b.runStart) >= Persist {
		b.metrics.closes.Inc()
		return Close
	}
	return Refuse
}
