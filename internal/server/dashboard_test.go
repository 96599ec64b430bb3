package server

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/natstest"
)

// dashboardFile is the Grafana dashboard shipped for the metrics.
const dashboardFile = "../../deploy/grafana/switchboard.json"

// metricName matches the metric names of a PromQL expression: words with
// an underscore that are not PromQL's own (functions, by/without, $vars).
var metricName = regexp.MustCompile(`\b(switchboard|process|go)_[a-z0-9_]+\b`)

// dashboardMetrics returns the metric names the dashboard queries, with
// a histogram's _bucket, _sum and _count read as the histogram.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var names []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			found := metricName.FindAllString(q.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: no metric in %q", p.Title, q.Expr)
			}
			for _, n := range found {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					n = strings.TrimSuffix(n, suffix)
				}
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// registered reports whether reg has a metric named name: registering
// another one by that name fails whatever its labels and help.
func registered(reg *prometheus.Registry, name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
	if err := reg.Register(probe); err != nil {
		return true
	}
	reg.Unregister(probe)
	return false
}

// TestDashboardQueriesExportedMetrics: every metric the Grafana dashboard
// queries is one a server exports, single (with history and an event
// handler) or clustered.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	ns := natstest.Start(t, 0)
	hubs := filepath.Join(t.TempDir(), "hubs.yaml")
	if err := os.WriteFile(hubs, []byte("hubs:\n  chat:\n    event_handlers:\n      - url_template: \"http://127.0.0.1:9/{event}\"\n        system_events: [connected]\n    history:\n      - {pattern: \"room:*\", max_messages: 10, max_age: 1h}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var regs []*prometheus.Registry
	for _, extra := range [][]string{nil, {"cluster.nats_url=" + ns.URL(), "server.node_id=dash"}} {
		cfg, err := config.Load(hubs, nil, append([]string{"server.addr=127.0.0.1:0", "signalr.addr=127.0.0.1:0", "server.data_dir=" + t.TempDir()}, extra...))
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		regs = append(regs, s.reg)
	}
	names := dashboardMetrics(t)
	if len(names) < 20 {
		t.Fatalf("the dashboard queries %d metrics: %v", len(names), names)
	}
	for _, n := range names {
		if !slices.ContainsFunc(regs, func(r *prometheus.Registry) bool { return registered(r, n) }) {
			t.Errorf("the dashboard queries %s, which no server exports", n)
		}
	}
}
