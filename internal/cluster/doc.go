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
//	sb.<ns>.ops.<hub>      the operations (sends, closes) of namespace ns ("wps", "signalr"),
//	                       one subject per hub ('.' in a hub name becomes '~')
//	sb.<ns>.ops.~marker    markers: what orders a node's requests after its ops (order.go)
//	sb.<ns>.node.<id>.req  requests (core.Request) for the conns node id holds, or for its
//	                       share of a user- or group-wide operation (request.go)
//	sb.<ns>.hist.<rule>.<hub>.<group>  the JetStream streams of durable history, one per
//	                       history rule, one subject per group (history.go)
//
// Every node subscribes to all of sb.<ns>.ops.> and delivers every operation
// it receives, its own included, to its core node: an operation a node
// accepted reaches every node, itself too, in the order that node published
// it (NATS keeps the order of one publisher's messages to one subscriber).
// A request waits for its node's ops published before it (order.go).
// The next slice narrows the subscription to the hubs, then the groups, a
// node holds (interest management), so that a publish crosses NATS only to
// the nodes with recipients.
package cluster
