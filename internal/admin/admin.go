package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns the registry every package registers its metrics on,
// with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Config configures the admin routes.
type Config struct {
	Registry *prometheus.Registry
	// Settings is what GET /admin/config shows (secrets already redacted).
	Settings any
	// Authorized guards /admin/ and /debug/pprof/; nil allows nobody.
	Authorized func(r *http.Request) bool
	Pprof      bool
	// History, if set, gives what GET /admin/history shows: the retention
	// policies and the size of the history log.
	History func() any
	// Cluster, if set, gives what GET /admin/cluster shows: the nodes
	// seen, the NATS connection and JetStream state.
	Cluster func(ctx context.Context) any
	// Connectors, if set, gives what GET /admin/connectors shows: each connector's state,
	// assignment and lag.
	Connectors func() any
	// Presence, if set, gives what GET /admin/presence shows: per hub, the
	// connections, users and groups of the cluster and of this node.
	Presence func(ctx context.Context) any
}

// Register adds the admin routes to mux: /metrics (open, as Prometheus
// scrapes it), /admin/config, /admin/history, /admin/cluster, /admin/connectors, /admin/presence and, when enabled, /debug/pprof/.
func Register(mux *http.ServeMux, cfg Config) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	guard := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cfg.Authorized == nil || !cfg.Authorized(r) {
				w.Header().Set("WWW-Authenticate", "Bearer")
				http.Error(w, "unauthorized: a server token signed with an access key is required", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /admin/config", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(cfg.Settings)
	})))
	if cfg.History != nil {
		mux.Handle("GET /admin/history", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(cfg.History())
		})))
	}
	if cfg.Cluster != nil {
		mux.Handle("GET /admin/cluster", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(cfg.Cluster(r.Context()))
		})))
	}
	if cfg.Connectors != nil {
		mux.Handle("GET /admin/connectors", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(cfg.Connectors())
		})))
	}
	if cfg.Presence != nil {
		mux.Handle("GET /admin/presence", guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(cfg.Presence(r.Context()))
		})))
	}
	if cfg.Pprof {
		mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
	}
}
