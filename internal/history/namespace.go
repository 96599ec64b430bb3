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
func (s *Service) Namespace(ns string) *Namespaced {
	return &Namespaced{s: s, prefix: ns + namespaceSep}
}

// Namespaced is the history of one namespace of hubs: core.History for its
// node, and the catch-up read and the replay count for its REST API (whose
// idempotency keys are Idempotency.Namespace's with the same name). Hubs are
// named without the namespace; the log names them "<namespace>/<hub>".
type Namespaced struct {
	s      *Service
	prefix string
}

var _ core.History = (*Namespaced)(nil)

// Keeps implements core.History.
func (n *Namespaced) Keeps(hub, group string) bool { return n.s.Keeps(hub, group) }

// Append implements core.History.
func (n *Namespaced) Append(ctx context.Context, hub, group string, m *core.Message) (func() error, error) {
	return n.s.Append(ctx, n.prefix+hub, group, m)
}

// Top implements core.History.
func (n *Namespaced) Top(hub, group string) (uint64, string) { return n.s.Top(n.prefix+hub, group) }

// Replay implements core.History.
func (n *Namespaced) Replay(hub, group string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	return n.s.Replay(n.prefix+hub, group, from, upTo)
}

// Rollbacks is Service.Rollbacks (core's recovering joins read it).
func (n *Namespaced) Rollbacks() uint64 { return n.s.Rollbacks() }

// CatchUp is Service.CatchUp on the namespace's stream of hub and group.
func (n *Namespaced) CatchUp(hub, group string, after uint64, epoch string, limit int) (Messages, error) {
	return n.s.CatchUp(n.prefix+hub, group, after, epoch, limit)
}

// IdempotentReplay counts a send of the namespace answered from the
// idempotency index.
func (n *Namespaced) IdempotentReplay(hub string) { n.s.IdempotentReplay(n.prefix + hub) }

// policyHub is the hub name that rules are looked up by: without its
// namespace.
func policyHub(hub string) string {
	if i := strings.LastIndex(hub, namespaceSep); i >= 0 {
		return hub[i+len(namespaceSep):]
	}
	return hub
}
