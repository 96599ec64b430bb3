// Package bench is Switchboard's load tool: it drives a running server through its public
// protocols (REST sends and json.webpubsub.azure.v1 WebSocket clients; for the signalr-*
// scenarios, SignalR clients that negotiate and speak the JSON or MessagePack hub protocol, joined
// to groups and sent to through the SignalR REST API), the way real clients do, and reports deliveries per second, end-to-end delivery latency from a send timestamp carried in
// every payload, lost / duplicated / out-of-order messages, handshakes per second, and the
// server's memory and CPU.
//
// Connections are held by workers: goroutines of the calling process, or child processes
// (the same binary re-executed as "switchboard bench worker") that talk JSON lines over their
// stdin and stdout, so that no process hits its open-file limit. The coordinator runs the REST
// publishers, tells workers what to do, and merges their figures.
package bench
