package server

import (
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// groupPresence turns the membership changes of the Web PubSub node's conns into the
// group presence events (azure.webpubsub.gp.joined / left) of the hubs whose event
// handlers take them. Core calls it on the node that holds the conn, so on a cluster each
// change is reported once, by its conn's node.
type groupPresence struct{ up *upstream.Client }

// groupEvents returns the core.Membership of up, or nil without event handlers (core
// then skips the calls altogether).
func groupEvents(up *upstream.Client) core.Membership {
	if up == nil {
		return nil
	}
	return groupPresence{up}
}

func (g groupPresence) Observes(hub string) bool { return g.up.ObservesGroups(hub) }

func (g groupPresence) Joined(c *core.Conn, group string) { g.up.GroupJoined(upConnOf(c), group) }

func (g groupPresence) Left(c *core.Conn, group string) { g.up.GroupLeft(upConnOf(c), group) }

// upConnOf is the identity of c in its upstream events.
func upConnOf(c *core.Conn) upstream.Conn {
	return upstream.Conn{Hub: c.Hub().Name(), ID: c.ID(), UserID: c.UserID(), Subprotocol: c.Protocol(), State: c.State()}
}
