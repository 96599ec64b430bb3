// Package cluster joins Switchboard nodes into one service over NATS: a
// core.Broker that carries operations between nodes, node identity and the
// heartbeats that tell which nodes are live. It knows core and NATS, and no
// HTTP.
//
// One NATS connection per node carries everything:
//
//	sb.nodes.id.<id>       presence: a node answers requests on its own id, so a second node
//	                       with that id finds it at start and refuses to start
//	sb.nodes.heartbeat     every node's heartbeat (id, instance, connections, start time)
//	sb.<ns>.ops.<hub>      the operations (sends, closes) of namespace ns ("wps", "signalr") to
//	                       every node: to all or to a user ('.' in a hub name becomes '~')
//	sb.<ns>.ops.~marker    markers: what orders a node's requests after its ops (order.go)
//	sb.<ns>.grp.<hub>.<g>  the operations to group g (its name in base64url), for the nodes
//	                       with members of it (interest.go)
//	sb.<ns>.node.<id>.ops  the operations to a conn of node id
//	sb.<ns>.sync           a round trip through every node: confirms a group subscription (interest.go)
//	sb.<ns>.node.<id>.req  requests (core.Request) for the conns node id holds, or for its
//	                       share of a user- or group-wide operation (request.go)
//	sb.<ns>.hist.<rule>.<hub>.<group>  the JetStream streams of durable history, one per
//	                       history rule, one subject per group (history.go)
//
// Every node subscribes to sb.<ns>.ops.* and its own node subject, and to a
// group's subject while it has members of the group (core tells it, see
// core.Interest): a publish crosses NATS once per node that may have
// recipients, and each node encodes it once for all of its recipients. A
// node delivers every operation it receives, its own included, to its core
// node, from all those subscriptions through one ordered inbox (inbox.go):
// an operation a node accepted reaches every node it goes to, itself too,
// in the order that node published it (NATS keeps the order of one
// publisher's messages to one subscriber connection, whatever their
// subjects). A request waits for its node's ops published before it
// (order.go).
package cluster
