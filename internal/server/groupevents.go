package server

import (
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/sessionlimit"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// groupPresence turns the membership changes of the Web PubSub node's conns into the
// group presence events (azure.webpubsub.gp.joined / left) of the hubs whose event
// handlers take them. Core calls it on the node that holds the conn, so on a cluster each
// change is reported once, by its conn's node. It keeps the ce-signature of the conns it
// reported (an HMAC per access key, which depends only on the keys and the conn id) until
// the conn ends, instead of computing it for every event.
type groupPresence struct {
	up   *upstream.Client
	keys *auth.KeyRing
	sigs sync.Map // conn id → ce-signature
}

// groupEvents returns the core.Membership of up, or nil without event handlers (core
// then skips the calls altogether).
func groupEvents(up *upstream.Client, keys *auth.KeyRing) *groupPresence {
	if up == nil {
		return nil
	}
	return &groupPresence{up: up, keys: keys}
}

// membership returns g as a core.Membership: nil (no observer) when g is nil.
func (g *groupPresence) membership() core.Membership {
	if g == nil {
		return nil
	}
	return g
}

func (g *groupPresence) Observes(hub string) bool { return g.up.ObservesGroups(hub) }

func (g *groupPresence) Joined(c *core.Conn, group string) { g.up.GroupJoined(g.conn(c), group) }

func (g *groupPresence) Left(c *core.Conn, group string) { g.up.GroupLeft(g.conn(c), group) }

// conn is the identity of c in its events, with its signature.
func (g *groupPresence) conn(c *core.Conn) upstream.Conn {
	uc := upConnOf(c)
	if v, ok := g.sigs.Load(c.ID()); ok {
		uc.Signature = v.(string)
	} else {
		uc.Signature = g.keys.Signature(c.ID())
		g.sigs.Store(c.ID(), uc.Signature)
	}
	return uc
}

// ended forgets c's signature; the node's OnConnEnd calls it after c's last Left.
func (g *groupPresence) ended(c *core.Conn) {
	if g != nil {
		g.sigs.Delete(c.ID())
	}
}

// upConnOf is the identity of c in its upstream events.
func upConnOf(c *core.Conn) upstream.Conn {
	return upstream.Conn{Hub: c.Hub().Name(), ID: c.ID(), UserID: c.UserID(), Subprotocol: c.Protocol(), State: c.State()}
}

// userLimits returns the limiter of the hubs' max_connections_per_user (both
// namespaces read hubs.<name>), or nil when no hub sets one.
func userLimits(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*sessionlimit.Limiter, error) {
	anyLimit := false
	for _, h := range cfg.Hubs {
		anyLimit = anyLimit || h.MaxConnectionsPerUser > 0
	}
	if !anyLimit {
		return nil, nil
	}
	return sessionlimit.New(func(hub string) sessionlimit.Policy {
		h := cfg.Hub(hub)
		notice := h.ConnectionLimitNotice
		if notice == "" {
			notice = config.DefaultConnectionLimitNotice
		}
		return sessionlimit.Policy{Max: h.MaxConnectionsPerUser, CloseOldest: h.OnConnectionLimit == config.CloseOldest, Notice: notice}
	}, log.With("component", "sessionlimit"), reg)
}
