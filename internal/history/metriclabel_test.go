package history_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

// TestHubMetricSeriesBoundedByPolicies: hubs that keep history through the
// "_default" rule share the label "_default" in the history metrics, so
// callers that use many hub names cannot grow the series; a hub the
// policies name keeps its own label.
func TestHubMetricSeriesBoundedByPolicies(t *testing.T) {
	reg := prometheus.NewRegistry()
	rules := []history.Rule{{Pattern: "*", Retention: history.Retention{MaxMessages: 10, MaxAge: time.Hour}}}
	s, err := history.New(history.Config{Dir: filepath.Join(t.TempDir(), "history"), Registerer: reg,
		Policies: history.Policies{"_default": rules, "chat": rules}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sr := s.Namespace("signalr")
	const hubs = 50
	for i := range hubs {
		for _, h := range []core.History{s, sr} {
			wait, err := h.Append(context.Background(), fmt.Sprintf("hub%d", i), "g", &core.Message{Data: []byte("x")})
			if err != nil {
				t.Fatal(err)
			}
			if err := wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if wait, err := s.Append(context.Background(), "chat", "g", &core.Message{Data: []byte("x")}); err != nil || wait() != nil {
		t.Fatalf("append to chat: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "hub" {
					continue
				}
				switch l.GetValue() {
				case "_default", "signalr/_default", "chat":
				default:
					t.Errorf("%s has a series for hub %q, want only _default, signalr/_default and chat", mf.GetName(), l.GetValue())
				}
			}
		}
	}
	if got := metrictest.Value(t, reg, "switchboard_history_appends_total", "hub", "_default"); got != hubs {
		t.Errorf("appends of _default hubs = %v, want %d", got, hubs)
	}
	if got := metrictest.Value(t, reg, "switchboard_history_appends_total", "hub", "chat"); got != 1 {
		t.Errorf("appends of chat = %v, want 1", got)
	}
}
