// Package sse is the Server-Sent Events transport: it streams a core conn's
// queued messages to a browser EventSource, one event per drained batch, on
// the HTTP handler's goroutine. It carries opaque bytes (already framed hub
// messages) server to client only; client sends arrive by POST and are the
// dialect's business.
package sse
