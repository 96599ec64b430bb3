// Package websocket moves frames between WebSocket clients and core conns:
// it upgrades HTTP requests, reads client frames on one goroutine per socket,
// and writes queued messages from a small pool of writers that coalesce
// everything a socket has queued into one write. It knows nothing of groups
// or JSON.
package websocket
