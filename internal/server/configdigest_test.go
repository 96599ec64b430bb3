package server

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
)

// The digest changes in exactly the part a shared setting belongs to, and
// not at all for the settings a node may have of its own.
func TestConfigDigestParts(t *testing.T) {
	base := func() config.Config {
		c := config.Default()
		c.Auth.AccessKeys = []string{"key-one", "key-two"}
		c.Hubs = map[string]config.HubConfig{"chat": {History: []config.HistoryRule{{Pattern: "room:*", MaxMessages: 10, MaxAge: time.Hour}}}}
		return c
	}
	want := configDigest(base())
	for _, tc := range []struct {
		name   string
		change func(*config.Config)
		part   string // "": no part changes
	}{
		{"another access key", func(c *config.Config) { c.Auth.AccessKeys[1] = "key-three" }, "access_keys"},
		{"keys in another order", func(c *config.Config) { c.Auth.AccessKeys = []string{"key-two", "key-one"} }, ""},
		{"a history rule", func(c *config.Config) { c.Hubs["chat"].History[0].MaxMessages = 11 }, "hubs"},
		{"idempotency window", func(c *config.Config) { c.History.IdempotencyWindow = time.Minute }, "history"},
		{"recovery window", func(c *config.Config) { c.Reliable.RecoveryWindow = time.Minute }, "reliable"},
		{"stateful reconnect", func(c *config.Config) { c.SignalR.StatefulReconnect = false }, "signalr"},
		{"message size", func(c *config.Config) { c.Limits.MaxMessageBytes = 1 << 10 }, "limits"},
		{"own addresses", func(c *config.Config) { c.Server.Addr, c.SignalR.Addr = ":9080", ":9081" }, ""},
		{"own node id and data", func(c *config.Config) { c.Server.NodeID, c.Server.DataDir = "b", "/tmp/b" }, ""},
		{"own connection limit", func(c *config.Config) { c.Limits.MaxConnections = 10 }, ""},
		{"own fsync", func(c *config.Config) { c.History.Fsync = "always" }, ""},
	} {
		c := base()
		tc.change(&c)
		got := configDigest(c)
		var changed []string
		for k := range maps.Keys(want) {
			if got[k] != want[k] {
				changed = append(changed, k)
			}
		}
		wantChanged := []string(nil)
		if tc.part != "" {
			wantChanged = []string{tc.part}
		}
		if !slices.Equal(changed, wantChanged) {
			t.Errorf("%s: changed parts %v, want %v", tc.name, changed, wantChanged)
		}
	}
	for part, d := range want {
		if len(d) != 24 {
			t.Errorf("part %s: digest %q, want 24 hex digits", part, d)
		}
	}
}
