// Package ratelimit holds the limits an operator sets on what one client may
// ask of the server: per client IP, the rate of handshakes and the number of
// concurrent connections; per connection, the rate of inbound messages.
//
// A Limiter is shared by both listeners. The dialects call it through
// interfaces of their own: Admit (or AdmitRate for requests that open no
// connection) before they look at a token, and a Budget per authenticated
// session for its messages. Every refusal is counted by limit in
// switchboard_ratelimit_refusals_total.
//
// The per-IP table is bounded: an address with no open connection is
// forgotten once its token bucket would be full again (it then means
// nothing), and at most MaxTracked addresses are kept; a new one evicts the
// least recently seen idle address, and when every tracked address holds a
// connection the new one is refused. IPv6 addresses are counted by /64
// prefix, the block a single host or subscriber is usually given.
package ratelimit
