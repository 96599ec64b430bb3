package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

// adminPresenceHubs bounds the hubs GET /admin/presence reports per
// namespace (each costs one request to every node).
const adminPresenceHubs = 100

type hubPresenceSummary struct {
	Hub         string `json:"hub"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Groups      int    `json:"groups"`
	Approximate bool   `json:"approximate,omitempty"`
	// Node is this node's own share.
	Node  nodePresence `json:"node"`
	Error string       `json:"error,omitempty"`
}

type nodePresence struct {
	Connections int `json:"connections"`
	Users       int `json:"users"`
	Groups      int `json:"groups"`
}

type namespacePresence struct {
	Hubs []hubPresenceSummary `json:"hubs"`
	// Truncated: the node holds more hubs than are shown (the first
	// adminPresenceHubs by name).
	Truncated bool `json:"truncated,omitempty"`
}

// presenceSummary gives what GET /admin/presence shows: for each hub this
// node holds (Web PubSub and SignalR), the cluster's counts and this node's.
func presenceSummary(s **Server) func(ctx context.Context) any {
	return func(ctx context.Context) any {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out := map[string]namespacePresence{"webpubsub": nodeSummary(ctx, (*s).node)}
		if (*s).sr != nil {
			out["signalr"] = nodeSummary(ctx, (*s).sr.node)
		}
		return out
	}
}

func nodeSummary(ctx context.Context, n *core.Node) namespacePresence {
	names := n.Hubs()
	slices.Sort(names)
	var out namespacePresence
	if len(names) > adminPresenceHubs {
		names, out.Truncated = names[:adminPresenceHubs], true
	}
	out.Hubs = make([]hubPresenceSummary, 0, len(names))
	for _, name := range names {
		h, err := n.LookupHub(name)
		if err != nil || h == nil {
			continue // reclaimed meanwhile
		}
		local := h.Presence()
		sum := hubPresenceSummary{Hub: name, Node: nodePresence{Connections: local.Conns, Users: local.Users, Groups: local.Groups}}
		r, err := h.Do(ctx, core.Request{Kind: core.ReqPresence})
		if err == nil {
			err = r.Err
		}
		switch {
		case err != nil:
			sum.Error = err.Error()
			if errors.Is(err, context.DeadlineExceeded) {
				sum.Error = "the cluster did not answer in time"
			}
		case r.Presence != nil:
			p := r.Presence
			sum.Connections, sum.Users, sum.Groups, sum.Approximate = p.Conns, p.Users, p.Groups, p.Approximate
		}
		out.Hubs = append(out.Hubs, sum)
	}
	return out
}

// presenceTarget is the SignalR invocation target of member notifications.
const presenceTarget = "presence"

// presenceNotify returns the member notifications of a namespace
// ("webpubsub" or "signalr") from the hubs' presence_notify patterns (the
// _default entry for hubs without their own), nil when no hub has any.
func presenceNotify(cfg config.Config, namespace string) *core.PresenceNotify {
	patterns := map[string][]string{} // every hub with an entry, by lower-cased name
	on := false
	for name, h := range cfg.Hubs {
		patterns[strings.ToLower(name)] = h.PresenceNotify
		on = on || len(h.PresenceNotify) > 0
	}
	if !on {
		return nil
	}
	match := func(hub, group string) bool { // hub is lower-cased
		ps, ok := patterns[hub]
		if !ok {
			ps = patterns["_default"]
		}
		for _, p := range ps {
			if history.MatchGlob(p, group) {
				return true
			}
		}
		return false
	}
	return &core.PresenceNotify{Match: match, Message: func(event, group, user string) *core.Message {
		body := presenceBody(event, group, user)
		if namespace == "signalr" {
			inv := append([]byte(`{"type":1,"target":"`+presenceTarget+`","arguments":[`), body...)
			return &core.Message{Type: core.JSON, Data: append(inv, "]}"...)}
		}
		return &core.Message{Type: core.JSON, Data: body}
	}}
}

// presenceBody is the JSON of a member notification:
// {"type":"presence","event":"joined"|"left","group":…,"userId":…}.
func presenceBody(event, group, user string) []byte {
	b := append([]byte(`{"type":"presence","event":`), `"`+event+`"`...)
	b = append(b, `,"group":`...)
	b = jsonstring.AppendHTMLSafe(b, group)
	b = append(b, `,"userId":`...)
	b = jsonstring.AppendHTMLSafe(b, user)
	return append(b, '}')
}
