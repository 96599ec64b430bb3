package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	"github.com/switchboardhq/switchboard/internal/config"
)

// configDigest returns, by part name, a digest of each part of cfg that
// every node of a cluster must share (cluster.Config.ConfigDigest): what
// decides the answer a client or a REST call gets, whichever node takes it.
// Settings a node may have of its own (addresses, node id, data directory,
// storage and connection limits, logging) are left out. The digests travel
// in heartbeats: they are truncated SHA-256 sums, never the values.
func configDigest(cfg config.Config) map[string]string {
	keys := slices.Clone(cfg.Auth.AccessKeys)
	slices.Sort(keys) // the primary key may differ during a rotation; the set may not
	parts := map[string]any{
		"access_keys": keys,
		"hubs":        cfg.Hubs,
		"history": struct {
			IdempotencyWindow string
			MaxReplay         int
		}{cfg.History.IdempotencyWindow.String(), cfg.History.MaxReplay},
		"reliable": cfg.Reliable,
		"signalr": struct {
			Enabled, StatefulReconnect bool
			ReconnectWindow            string
			Upstreams                  []config.SignalRUpstream
		}{cfg.SignalR.Addr != "", cfg.SignalR.StatefulReconnect, cfg.SignalR.ReconnectWindow.String(), cfg.SignalR.Upstreams},
		"limits": struct{ MaxMessageBytes, MaxBodyBytes, MaxGroupsPerConn int }{
			cfg.Limits.MaxMessageBytes, cfg.Limits.MaxBodyBytes, cfg.Limits.MaxGroupsPerConn},
	}
	d := make(map[string]string, len(parts))
	for name, v := range parts {
		b, err := json.Marshal(v)
		if err != nil {
			panic("server: config digest: " + err.Error()) // plain data: cannot fail
		}
		sum := sha256.Sum256(append([]byte("switchboard config "+name+"\x00"), b...))
		d[name] = hex.EncodeToString(sum[:12])
	}
	return d
}
