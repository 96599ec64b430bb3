package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/admission"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/listener"
	"github.com/switchboardhq/switchboard/internal/metricreg"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
)

// listeners is what both listeners share: the accept-error count, the certificate
// (nil without TLS) and the admission gate of client connections.
type listeners struct {
	acceptErrors *prometheus.CounterVec
	cert         *listener.Certificate
	gate         *admission.Gate
	log          *slog.Logger
}

// newListeners loads the certificate and makes the gate; open counts the upgraded
// WebSockets of both listeners.
func newListeners(cfg config.Config, log *slog.Logger, reg prometheus.Registerer, open func() int) (*listeners, error) {
	l := &listeners{log: log}
	var err error
	l.acceptErrors, err = metricreg.Register(reg, "server", prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "switchboard", Subsystem: "listener", Name: "accept_errors_total",
		Help: "Temporary accept errors (out of file descriptors and the like) waited out with a backoff, by listener.",
	}, []string{"listener"}))
	if err != nil {
		return nil, err
	}
	maxConns := cfg.Limits.MaxConnections
	switch maxConns {
	case 0:
		maxConns = admission.DefaultMax()
	case -1:
		maxConns = 0 // no limit
	}
	log.Info("client connections limited", "max_connections", maxConns, "configured", cfg.Limits.MaxConnections)
	if l.gate, err = admission.New(admission.Config{Max: maxConns, Open: open, Registerer: reg, Logger: log.With("component", "admission")}); err != nil {
		return nil, err
	}
	if cfg.TLS.CertFile != "" {
		if l.cert, err = listener.LoadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, log.With("component", "tls")); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return l, nil
}

// wrap makes a bound listener the one to serve: accept errors waited out, then TLS.
func (l *listeners) wrap(ln net.Listener, name string) net.Listener {
	ln = listener.Retry(ln, l.acceptErrors.WithLabelValues(name), l.log.With("listener", name))
	if l.cert != nil {
		ln = l.cert.TLS(ln)
	}
	return ln
}

// scheme is the scheme of the default public endpoints.
func (l *listeners) scheme() string {
	if l.cert != nil {
		return "https"
	}
	return "http"
}

// httpServer sets what both listeners' http.Servers share: the header cap of the front
// door, and handler behind the early answer of requests with unread bodies.
// readTimeout (server.read_timeout) bounds the reading of a request, body included (a
// withheld body is dropped with the connection). It does not bound what follows: WebSocket
// upgrades clear the deadline, and net/http clears it once a request is read, so SSE
// streams and long polls keep their own lifetimes.
func httpServer(handler http.Handler, readTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           withTLSState(answerWithoutBody(handler)),
		MaxHeaderBytes:    websocket.HTTPMaxHeaderBytes,
		ReadHeaderTimeout: min(10*time.Second, readTimeout),
		ReadTimeout:       readTimeout,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       websocket.ConnContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// webPubSubKind sorts the main listener's requests for the gate: every GET of the
// client endpoint opens a connection.
func webPubSubKind(r *http.Request) admission.Kind {
	if r.Method == http.MethodGet && (r.URL.Path == "/client" || strings.HasPrefix(r.URL.Path, "/client/")) {
		return admission.Opens
	}
	return admission.Other
}

// signalRKind sorts the SignalR listener's requests: negotiate, a WebSocket and an SSE
// stream open a connection; a long poll holds one open.
func signalRKind(r *http.Request) admission.Kind {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/client/negotiate" && r.Method == http.MethodPost:
		return admission.Opens
	case path != "/client" || r.Method != http.MethodGet:
		return admission.Other
	case websocket.IsUpgrade(r), strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		return admission.Opens
	}
	return admission.Holds
}

// withTLSState gives a request that came over TLS its Request.TLS when net/http did not
// set it: the front door hands connections to net/http wrapped, and net/http sets it only
// for a *tls.Conn. Without it, REST calls over TLS built http:// links and token audiences.
func withTLSState(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if cs := websocket.TLSState(r.Context()); cs != nil {
				r = r.WithContext(r.Context()) // a copy: the server's request stays as it was
				r.TLS = cs
			}
		}
		next.ServeHTTP(w, r)
	})
}

// answerWithoutBody lets a handler answer a request whose body it did not read (a 401
// before the body, a 404) at once: net/http would first read what is left of the body
// to keep the connection, and wait for a body the client withholds. Such an answer
// closes the connection instead. Requests without a body pass untouched.
func answerWithoutBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b := &watchedBody{ReadCloser: r.Body, remain: r.ContentLength}
		r.Body = b
		next.ServeHTTP(&closeIfUnread{ResponseWriter: w, body: b}, r)
	})
}

// watchedBody tells whether its whole body was read.
type watchedBody struct {
	io.ReadCloser
	remain int64 // bytes to read; < 0: unknown (chunked)
	eof    bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.remain > 0 {
		b.remain -= int64(n)
	}
	if err == io.EOF || b.remain == 0 {
		b.eof = true
	}
	return n, err
}

// closeIfUnread adds Connection: close to a response written before the body was read.
type closeIfUnread struct {
	http.ResponseWriter
	body    *watchedBody
	written bool
}

func (w *closeIfUnread) WriteHeader(code int) {
	if !w.written {
		w.written = true
		if !w.body.eof {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeIfUnread) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap gives http.ResponseController the net/http writer.
func (w *closeIfUnread) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher.
func (w *closeIfUnread) Flush() {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}
