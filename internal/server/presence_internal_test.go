package server

import (
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestPresenceNotifyMatch: a hub's own patterns, else _default's; a hub
// with its own entry and no patterns notifies nothing; no patterns
// anywhere turns notifications off; both namespaces' bodies.
func TestPresenceNotifyMatch(t *testing.T) {
	if presenceNotify(config.Config{Hubs: map[string]config.HubConfig{"chat": {}}}, "webpubsub") != nil {
		t.Fatal("notifications on without a pattern")
	}
	cfg := config.Config{Hubs: map[string]config.HubConfig{
		"Chat":     {PresenceNotify: []string{"room:*"}},
		"quiet":    {AnonymousConnect: true},
		"_default": {PresenceNotify: []string{"*"}},
	}}
	pn := presenceNotify(cfg, "webpubsub")
	for _, tc := range []struct {
		hub, group string
		want       bool
	}{{"chat", "room:1", true}, {"chat", "lobby", false}, {"quiet", "room:1", false}, {"other", "anything", true}} {
		if got := pn.Match(tc.hub, tc.group); got != tc.want {
			t.Errorf("%s/%s: %v, want %v", tc.hub, tc.group, got, tc.want)
		}
	}
	if got := string(pn.Message("joined", `r"1`, "<ann>").Data); got != `{"type":"presence","event":"joined","group":"r\"1","userId":"\u003cann\u003e"}` {
		t.Errorf("web pubsub body %s", got)
	}
	sr := presenceNotify(cfg, "signalr")
	if got := string(sr.Message("left", "g", "u").Data); got != `{"type":1,"target":"presence","arguments":[{"type":"presence","event":"left","group":"g","userId":"u"}]}` {
		t.Errorf("signalr invocation %s", got)
	}
}
