// Package longpoll is the long-polling transport: a Conn outlives the GET
// polls of one client and answers each with what a core conn has queued,
// holding it until something is. It watches the gaps between polls to tell
// when the client is gone. It carries opaque bytes (already framed hub
// messages) server to client only; client sends arrive by POST and are the
// dialect's business.
package longpoll
