package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg"
	"golang.org/x/time/rate"
)

//go:embed assets
var assets embed.FS

// CookieName is the session cookie's name.
const CookieName = "switchboard_dashboard"

// CSRFHeader must be set (to "1") on every state-changing call, which a
// cross-site form cannot do and a cross-origin fetch cannot do without a
// CORS preflight the dashboard never answers.
const CSRFHeader = "X-Switchboard-Dashboard"

// Namespace is one core node the dashboard shows and acts on.
type Namespace struct {
	Name string // "webpubsub" or "signalr"
	Node *core.Node
}

// Config configures the dashboard.
type Config struct {
	// Keys are the access keys: they log in when Secret is empty, and sign
	// the token tool's tokens. Required.
	Keys *auth.KeyRing
	// Secret, if set, is the only password that logs in.
	Secret string
	// SessionTTL is the lifetime of a login. Default 12h.
	SessionTTL time.Duration
	// AllowAnonymousLocalhost opens the dashboard without a login to
	// loopback peers (whose Host header names a loopback address).
	AllowAnonymousLocalhost bool
	// Namespaces are the nodes shown; the first is Web PubSub's. Required.
	Namespaces []Namespace
	Tracer     *Tracer // required
	// Gatherer is the metrics registry the rates and event-handler health
	// are read from. Required.
	Gatherer prometheus.Gatherer
	// Cluster, History and Connectors give the existing admin summaries.
	Cluster    func(ctx context.Context) any
	History    func() any
	Connectors func() any
	// Streams returns the n biggest history streams (nil: none).
	Streams func(ctx context.Context, n int) []history.StreamStat
	// Peers asks the cluster's other live nodes for their Summary, by node
	// id, with the reason of each that did not answer (nil: no cluster).
	Peers func(ctx context.Context) (answers map[string][]byte, missing map[string]string)
	// Endpoint and SignalREndpoint are the public base URLs of the two
	// listeners (SignalREndpoint "" without one), for the token tool.
	Endpoint        func() string
	SignalREndpoint func() string
	// ClientIP names the client of a request (behind trusted proxies);
	// nil: the peer address.
	ClientIP func(r *http.Request) netip.Addr
	// LoginRate and LoginBurst bound login attempts per client IP.
	// Default 1 per 2s, burst 5.
	LoginRate  rate.Limit
	LoginBurst int
	// MaxBodyBytes bounds the body of a call (the publish console's
	// message). Default 1 MiB.
	MaxBodyBytes int64
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// Dashboard serves /dashboard.
type Dashboard struct {
	cfg      Config
	sessions sessions
	static   http.Handler
	logins   *loginLimiter
	metrics  metrics
	now      func() time.Time

	peerCache    peerCache
	streamsCache streamsCache
}

type metrics struct {
	logins   *prometheus.CounterVec
	refusals *prometheus.CounterVec
	actions  *prometheus.CounterVec
}

// New returns the dashboard.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Keys == nil || len(cfg.Namespaces) == 0 || cfg.Tracer == nil || cfg.Gatherer == nil {
		return nil, errors.New("dashboard: Keys, Namespaces, Tracer and Gatherer are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.LoginRate <= 0 {
		cfg.LoginRate = rate.Every(2 * time.Second)
	}
	if cfg.LoginBurst <= 0 {
		cfg.LoginBurst = 5
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Endpoint == nil {
		cfg.Endpoint = func() string { return "" }
	}
	if cfg.SignalREndpoint == nil {
		cfg.SignalREndpoint = func() string { return "" }
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = peerIP
	}
	secret := cfg.Secret
	if secret == "" {
		secret = cfg.Keys.Primary()
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	d := &Dashboard{cfg: cfg, sessions: newSessions(secret, cfg.SessionTTL), static: http.FileServerFS(sub),
		logins: newLoginLimiter(cfg.LoginRate, cfg.LoginBurst, 10000), now: time.Now}
	m := &d.metrics
	if m.logins, err = metricreg.Register(cfg.Registerer, "dashboard", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "dashboard", Name: "logins_total",
		Help: "Dashboard login attempts, by result (ok, bad_key, rate_limited, bad_request).",
	}, []string{"result"})); err != nil {
		return nil, err
	}
	if m.refusals, err = metricreg.Register(cfg.Registerer, "dashboard", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "dashboard", Name: "refused_total",
		Help: "Dashboard requests refused, by reason (no_session, forged_session, expired_session, csrf, bad_request, too_many_watchers).",
	}, []string{"reason"})); err != nil {
		return nil, err
	}
	if m.actions, err = metricreg.Register(cfg.Registerer, "dashboard", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "dashboard", Name: "actions_total",
		Help: "Dashboard actions done (send, close, token, negotiate).",
	}, []string{"action"})); err != nil {
		return nil, err
	}
	return d, nil
}

// Register adds the dashboard's routes to mux: /dashboard/… and the
// redirect of exactly "/" to it.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	})
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	})
	mux.HandleFunc("GET /dashboard/{$}", d.index)
	mux.HandleFunc("GET /dashboard/login", d.loginPage)
	mux.HandleFunc("POST /dashboard/login", d.login)
	mux.Handle("POST /dashboard/logout", d.guard(true, http.HandlerFunc(d.logout)))
	mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/", d.static))
	mux.Handle("GET /dashboard/api/overview", d.guard(false, http.HandlerFunc(d.overview)))
	mux.Handle("GET /dashboard/api/conn", d.guard(false, http.HandlerFunc(d.inspect)))
	mux.Handle("GET /dashboard/api/trace", d.guard(false, http.HandlerFunc(d.trace)))
	mux.Handle("POST /dashboard/api/close", d.guard(true, http.HandlerFunc(d.closeConn)))
	mux.Handle("POST /dashboard/api/send", d.guard(true, http.HandlerFunc(d.send)))
	mux.Handle("POST /dashboard/api/token", d.guard(true, http.HandlerFunc(d.token)))
	mux.HandleFunc("/dashboard/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such dashboard call: "+r.Method+" "+r.URL.Path)
	})
}

// Tracer returns the live trace.
func (d *Dashboard) Tracer() *Tracer { return d.cfg.Tracer }

// Close ends the live-trace streams (server shutdown).
func (d *Dashboard) Close() { d.cfg.Tracer.Close() }

// authorized reports whether r carries a valid session (or may go without
// one), and, if not, the refusal's reason.
func (d *Dashboard) authorized(r *http.Request) (bool, string) {
	if d.anonymousLocal(r) {
		return true, ""
	}
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false, "no_session"
	}
	switch err := d.sessions.check(c.Value, d.now()); {
	case err == nil:
		return true, ""
	case errors.Is(err, errSessionExpired):
		return false, "expired_session"
	default:
		return false, "forged_session"
	}
}

// anonymousLocal: allow_anonymous_localhost is on, the peer is loopback
// and the Host names a loopback address (so that a page of another site
// whose name was rebound to 127.0.0.1 is not let in).
func (d *Dashboard) anonymousLocal(r *http.Request) bool {
	if !d.cfg.AllowAnonymousLocalhost || !peerIP(r).IsLoopback() {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsLoopback()
}

var crossOrigin = http.NewCrossOriginProtection()

// guard refuses a request without a session with 401; a state-changing one
// (mutating) also needs the CSRF header and a same-origin request (403).
func (d *Dashboard) guard(mutating bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if ok, reason := d.authorized(r); !ok {
			d.metrics.refusals.WithLabelValues(reason).Inc()
			writeError(w, http.StatusUnauthorized, "log in to the dashboard first ("+strings.ReplaceAll(reason, "_", " ")+")")
			return
		}
		if mutating {
			if r.Header.Get(CSRFHeader) != "1" {
				d.metrics.refusals.WithLabelValues("csrf").Inc()
				writeError(w, http.StatusForbidden, "the "+CSRFHeader+": 1 header is required")
				return
			}
			if err := crossOrigin.Check(r); err != nil {
				d.metrics.refusals.WithLabelValues("csrf").Inc()
				writeError(w, http.StatusForbidden, "cross-origin request refused: "+err.Error())
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (d *Dashboard) index(w http.ResponseWriter, r *http.Request) {
	if ok, _ := d.authorized(r); !ok {
		http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
		return
	}
	d.page(w, "index.html", http.StatusOK, "")
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if ok, _ := d.authorized(r); ok {
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
		return
	}
	d.page(w, "login.html", http.StatusOK, "")
}

// page writes an embedded page, with msg in place of {{message}}.
func (d *Dashboard) page(w http.ResponseWriter, name string, status int, msg string) {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = []byte(strings.Replace(string(b), "{{message}}", htmlEscape(msg), 1))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(b)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}

// login checks the posted key against dashboard.secret, or every access
// key, in constant time, after the client IP's rate limit.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if err := crossOrigin.Check(r); err != nil {
		d.metrics.logins.WithLabelValues("bad_request").Inc()
		d.page(w, "login.html", http.StatusForbidden, "Cross-origin login refused.")
		return
	}
	if !d.logins.allow(d.cfg.ClientIP(r)) {
		d.metrics.logins.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", "2")
		d.page(w, "login.html", http.StatusTooManyRequests, "Too many login attempts: wait a little and try again.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		d.metrics.logins.WithLabelValues("bad_request").Inc()
		d.page(w, "login.html", http.StatusBadRequest, "The login form could not be read.")
		return
	}
	if !d.validKey(r.PostForm.Get("key")) {
		d.metrics.logins.WithLabelValues("bad_key").Inc()
		d.cfg.Logger.Warn("dashboard login refused", "client", d.cfg.ClientIP(r).String())
		d.page(w, "login.html", http.StatusUnauthorized, "That key is not valid.")
		return
	}
	d.metrics.logins.WithLabelValues("ok").Inc()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: d.sessions.mint(d.now()), Path: "/dashboard/",
		MaxAge: int(d.cfg.SessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
}

// validKey compares key with the secret or with every access key, each
// comparison in constant time and all of them always made.
func (d *Dashboard) validKey(key string) bool {
	if key == "" {
		return false
	}
	if d.cfg.Secret != "" {
		return subtle.ConstantTimeCompare([]byte(key), []byte(d.cfg.Secret)) == 1
	}
	ok := 0
	for _, k := range d.cfg.Keys.Keys() {
		ok |= subtle.ConstantTimeCompare([]byte(key), []byte(k))
	}
	return ok == 1
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/dashboard/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged out"})
}

// loginLimiter is a token bucket per client IP, for at most max IPs; past
// that, new IPs share one bucket.
type loginLimiter struct {
	mu       sync.Mutex
	every    rate.Limit
	burst    int
	max      int
	ips      map[netip.Addr]*rate.Limiter
	overflow *rate.Limiter
}

func newLoginLimiter(r rate.Limit, burst, max int) *loginLimiter {
	return &loginLimiter{every: r, burst: burst, max: max, ips: make(map[netip.Addr]*rate.Limiter), overflow: rate.NewLimiter(r, burst)}
}

func (l *loginLimiter) allow(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	lim := l.ips[ip]
	if lim == nil {
		if len(l.ips) >= l.max {
			for k, v := range l.ips { // forget the ones whose bucket refilled
				if v.TokensAt(now) >= float64(l.burst) {
					delete(l.ips, k)
				}
			}
		}
		if len(l.ips) >= l.max {
			return l.overflow.AllowN(now, 1)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.ips[ip] = lim
	}
	return lim.AllowN(now, 1)
}

func peerIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// apiError is the body of every refusal.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}

// badRequest answers 400 with the problem, counted.
func (d *Dashboard) badRequest(w http.ResponseWriter, format string, args ...any) {
	d.metrics.refusals.WithLabelValues("bad_request").Inc()
	writeError(w, http.StatusBadRequest, fmt.Sprintf(format, args...))
}
