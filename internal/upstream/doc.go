// Package upstream calls a hub's event handlers (the Web PubSub upstream webhooks): it
// sends connect, user, connected and disconnected events as CloudEvents binary-mode POSTs,
// signed and behind the abuse-protection handshake; it knows no sockets, hubs or conns.
//
// A [Client] is built from a [Config] with [New]. [Client.Connect] and [Client.UserEvent]
// block until the handler answers (bounded by the handler's timeout) and return what the
// caller applies to the connection or sends back to the client. [Client.Connected] and
// [Client.Disconnected] never block: they queue the event, and a small pool of workers owned
// by the Client delivers it at least once, in order per connection, retrying with backoff
// on network errors, 408, 429 and 5xx. [Client.Close] flushes the queue within its context,
// then stops every goroutine the Client started.
//
// Before the first request to a handler host the Client sends the abuse-protection
// OPTIONS request; a host that refuses it gets no events until RevalidateAfter has passed.
//
// Callers branch on [ErrNoHandler] (no handler takes the event), [*RejectError] (the
// handler answered 4xx or 5xx: reject with that status and reason), and otherwise answer
// a server error: [ErrUnavailable] (timeout, unreachable, refused host) or [ErrBadResponse]
// (oversized or invalid reply).
package upstream
