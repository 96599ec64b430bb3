// Package admission bounds the client connections a node holds open
// (limits.max_connections): at the limit, a request that would open one more is
// answered 503 before any work is done for it, while requests that open nothing (REST,
// /metrics) and the polls of connections already open keep being served.
package admission
