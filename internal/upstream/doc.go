// Package upstream calls the backend's webhooks: the event handlers of Azure Web PubSub
// (CloudEvents binary-mode POSTs, signed, behind the abuse-protection handshake) and the
// upstreams of Azure SignalR Service's serverless mode (X-ASRS-* POSTs); it knows no
// sockets, hubs or conns.
//
// A [Client] (Web PubSub) is built from a [Config] with [New]. [Client.Connect] and
// [Client.UserEvent] block until the handler answers (bounded by the handler's timeout)
// and return what the caller applies to the connection or sends back to the client.
// Before the first request to a handler host the Client sends the abuse-protection
// OPTIONS request; a host that refuses it gets no events until RevalidateAfter has passed.
//
// A [SignalRClient] is built from a [SignalRConfig] with [NewSignalR]. Each hub has an
// ordered list of [SignalRUpstream] entries; an event goes to the first whose hub,
// category and event patterns match it. [SignalRClient.Invoke] forwards a client
// invocation and returns the upstream's status and body, bounded by the entry's timeout.
//
// Both clients share one delivery machinery (the dispatcher): connected and disconnected
// events never block the caller; they are queued, and a small pool of workers owned by
// the client delivers each at least once, in order per connection, retrying with backoff
// on network errors, 408, 429 and 5xx, within a bounded queue whose overflow is dropped
// and counted. Close flushes the queue within its context, then stops every goroutine the
// client started. Every attempt is counted by event kind and status in
// switchboard_upstream_* (Web PubSub) or switchboard_upstream_signalr_* (SignalR).
//
// Callers branch on [ErrNoHandler] (no handler or upstream takes the event; nothing was
// sent), [*RejectError] (a Web PubSub handler answered 4xx or 5xx: reject with that status
// and reason), [ErrResponseTooLarge] (a SignalR upstream's answer is over the cap), and
// otherwise answer a server error: [ErrUnavailable] (timeout, unreachable, refused host)
// or [ErrBadResponse] (oversized or invalid reply).
package upstream
