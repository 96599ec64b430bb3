package core

// Membership is told of every change of a conn's group membership, on the
// node that holds the conn: a REST operation that reached another node of a
// cluster is run here by the Router (remote.go), so one observer per node
// sees every change of its own conns, and the cluster's observers together
// see all of them once. The upstream side implements it (group presence
// events); core only calls it.
//
// Joined and Left are called with the conn's membership lock held, right
// after the change, so the calls for one conn come in the order of its
// changes: after ConnInfo.OnConnect, the joins of the conn's initial groups
// (token, connect handler, user–group tags), then every later join and
// leave, then one Left per group when the session ends for good, before
// Config.OnConnEnd. A change that changes nothing (a join of a member, a
// leave of a non-member) is not reported. A reliable session that waits in
// its recovery window keeps its groups, so a client that comes back causes
// no Left/Joined pair. The calls must not block (queue, do not send) and
// must not call back into the conn's membership.
type Membership interface {
	// Observes reports whether the changes of hub are wanted; it is asked
	// once when the node makes the hub, so that a hub nobody observes
	// pays nothing per change.
	Observes(hub string) bool
	Joined(c *Conn, group string)
	Left(c *Conn, group string)
}
