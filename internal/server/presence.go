package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
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
