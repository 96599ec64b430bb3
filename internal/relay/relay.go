// Package relay is the seam between a dialect's client endpoint and the
// cluster for a client whose session lives on another node: the node the
// client's socket reached hands the socket's messages to the node that holds
// the session (the owner) and writes the owner's messages to the socket. The
// session, its sequence ids, acks, groups and permissions stay on the owner;
// the node with the socket only moves whole messages.
//
// The package holds the types both sides share and no transport: package
// cluster carries relays over NATS, the dialects attach them to sessions.
package relay

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboardhq/switchboard/internal/core"
)

// Kinds of Request: what the client asks of the owner.
const (
	// KindWebPubSubResume resumes a json.reliable.webpubsub.azure.v1
	// session (awps_connection_id, awps_reconnection_token).
	KindWebPubSubResume = "wps.resume"
	// KindSignalRWebSocket opens the WebSocket of a SignalR connection
	// negotiated on the owner, or brings a stateful one back: ConnID is
	// the connection token, UserID the user of the client's access token
	// (verified by the node with the socket).
	KindSignalRWebSocket = "signalr.websocket"
	// KindSignalRSSE opens the Server-Sent Events stream of a SignalR
	// connection negotiated on the owner (ConnID, UserID as for
	// KindSignalRWebSocket).
	KindSignalRSSE = "signalr.sse"
	// KindSignalRPoll is one long poll of a SignalR connection of the
	// owner: the owner's HTTP answer comes back on the relay (its status
	// and headers as a text message, its body as binary ones), the relay's
	// close ends it; the client end's close aborts it.
	KindSignalRPoll = "signalr.poll"
	// KindSignalRSend is a Call: the body of a client's POST (its
	// messages) for a SignalR connection of the owner.
	KindSignalRSend = "signalr.send"
	// KindSignalRStop is a Call: the DELETE of a long-polling client that
	// stops.
	KindSignalRStop = "signalr.stop"
)

// Request is what the node with the socket asks the owner: attach this
// client to the session ConnID of hub Hub, speaking Protocol, proving it
// with Token (a reconnection token) or UserID (verified where the socket
// is).
type Request struct {
	Kind, Hub, Protocol, ConnID, Token, UserID string
}

// Refusal is the owner's answer to a Request it does not accept: the close
// code and reason the client gets, exactly as on the owner itself (for a
// request answered before the upgrade, an HTTP status and body).
type Refusal struct {
	Code   int
	Reason string
}

func (r *Refusal) Error() string { return fmt.Sprintf("relay refused: %d %s", r.Code, r.Reason) }

// Handler takes a client's messages and the end of its socket, one call at
// a time: what a websocket.Socket serves (websocket.Handler).
type Handler interface {
	HandleMessage(data []byte, binary bool) error
	HandleClose(reason string)
}

// Socket is a client's socket as a session uses it: the link its conn
// writes to (drained from the bound source) and whether the client closed
// it with a close frame. A *websocket.Socket is one; so is the owner's end
// of a relay.
type Socket interface {
	core.Link
	Bind(src core.Source)
	ClosedByClient() bool
}

// Answer is the owner's answer to a Call: an HTTP status and body.
type Answer struct {
	Status int
	Body   string
}

// Answerer runs a Call on the owner (a request of the client that is not a
// stream: a SignalR POST) and answers it as it would answer the client.
type Answerer func(req Request, body []byte) Answer

// Acceptor attaches a relayed client to a session of this node (the
// owner): it checks req as the dialect checks a client on its own socket,
// binds sock to the session's conn and returns the handler of the client's
// messages, or a *Refusal.
type Acceptor func(req Request, sock Socket) (Handler, error)

// Dialer hands a client to the owner of its session; the cluster is one.
type Dialer interface {
	// Remote reports whether the conn id names a session held by another
	// node, and which.
	Remote(connID string) (node string, ok bool)
	// Dial asks node to attach the client. Accepted, it returns the relay,
	// whose owner may already be writing to it (held until Attach).
	// Otherwise the error is the owner's *Refusal, or a *Refusal of this
	// node (its relay limit), or ErrOwnerGone (no live node has that id),
	// or another error: the owner could not be asked (NATS down, no answer
	// in time).
	Dial(ctx context.Context, node string, req Request) (Conn, error)
	// Call runs a request with body on node and returns its answer; the
	// errors are Dial's (ErrOwnerGone, or node unreachable).
	Call(ctx context.Context, node string, req Request, body []byte) (Answer, error)
}

// Conn is an accepted relay on the node with the socket.
type Conn interface {
	// Attach binds sock to the relay and returns the handler to Serve
	// sock with.
	Attach(sock Socket) Handler
	// Abort ends a relay that gets no socket (the upgrade failed): the
	// owner learns that the client dropped.
	Abort(reason string)
}

// KeepAliver is a Socket that can send a protocol-level keep-alive frame
// in place of WebSocket pings (websocket.Socket.SetKeepAlive): a relay
// passes the owner's choice on to the client's socket.
type KeepAliver interface {
	SetKeepAlive(frame []byte, binary bool)
}

// ErrOwnerGone is Dial's error when no live node has the owner's id: the
// session is gone with its node.
var ErrOwnerGone = errors.New("relay: the node holding the session is gone")

// Close codes of relays.
const (
	// CloseUnavailable closes a client whose owner could not be asked, or
	// whose relay broke (a lost message, the owner left the heartbeats,
	// NATS down): the client may try again (RFC 6455 1013, try again later).
	CloseUnavailable = 1013
)
