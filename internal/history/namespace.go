package history

import (
	"context"
	"strings"

	"github.com/switchboardhq/switchboard/internal/core"
)

// namespaceSep joins a namespace and a hub name in the log. Hub names cannot
// contain it, so the streams of two namespaces never meet.
const namespaceSep = "/"

// Namespace returns the service as the history of another namespace of hubs
// (the SignalR endpoint's): its streams are kept apart from the default
// namespace's, and its groups follow the same hubs.<name>.history rules.
func (s *Service) Namespace(ns string) core.History {
	return namespaced{s: s, prefix: ns + namespaceSep}
}

type namespaced struct {
	s      *Service
	prefix string
}

func (n namespaced) Keeps(hub, group string) bool { return n.s.Keeps(hub, group) }

func (n namespaced) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	return n.s.Append(ctx, n.prefix+hub, group, m)
}

func (n namespaced) Top(hub, group string) (uint64, string) { return n.s.Top(n.prefix+hub, group) }

func (n namespaced) Replay(hub, group string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	return n.s.Replay(n.prefix+hub, group, from, upTo)
}

// policyHub is the hub name that rules are looked up by: without its
// namespace.
func policyHub(hub string) string {
	if i := strings.LastIndex(hub, namespaceSep); i >= 0 {
		return hub[i+len(namespaceSep):]
	}
	return hub
}
