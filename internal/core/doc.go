// Package core routes messages among hubs, groups, users and conns; it knows no
// HTTP, JSON or sockets.
//
// A Node holds hubs; a Hub holds conns, the groups they belong to and the users
// they act for. Every send names a Target (all, a group, a user or one conn,
// with excluded conn ids and an optional filter) and goes through the Broker,
// which hands it back to the Deliver method of every node that may hold a
// recipient. Delivery resolves the target under read locks of the shards it
// touches and appends the message, encoded once per Codec, to each recipient's
// byte-bounded outbound queue; the transport's writer drains queues in batches.
//
// Lock order: hub shard (conns, groups or users) → Conn.mu → Conn.out.mu.
// Nothing holds two shard locks at once.
//
// Groups that keep history go through the hub's sequencer (history.go): a
// send is made durable through the History seam, then broadcast in offset
// order; a join that recovers from an offset replays and joins in the same
// order. Sequencer locks are never held together with the locks above, but
// for a history that delivers itself (a cluster's, stored.go): there the
// group's sequencer shard lock is held over the delivery of a stored message
// and over a recovering join's last step, so the order is sequencer shard →
// hub shard → Conn.mu → Conn.out.mu, and nothing takes a sequencer lock while
// holding one of the others.
package core
