package upstream

import (
	"context"
	"fmt"
	"mime"
	"strings"
)

// EventResponse is a handler's 2xx answer to a user event.
type EventResponse struct {
	Status      int    // 200, 204, …
	ContentType string // the reply's Content-Type, as sent; "" when absent
	Body        []byte // nil when empty: nothing goes back to the client
	// State, when not nil, is the new connection state ("" clears it).
	State *string
}

// DataType maps ContentType to the Web PubSub data type of the message sent back to the
// client: "text" for text/plain, "json" for application/json (and +json), "binary" for
// everything else, absent included.
func (r *EventResponse) DataType() string {
	mt, _, err := mime.ParseMediaType(r.ContentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(r.ContentType))
	}
	switch {
	case mt == "text/plain":
		return "text"
	case mt == "application/json", strings.HasSuffix(mt, "+json"):
		return "json"
	default:
		return "binary"
	}
}

// UserEvent sends user event event (the name without prefix; "message" for frames of raw
// connections) with data of the given Content-Type, and waits for the answer, bounded by
// ctx and the handler's timeout. The caller keeps per-connection order by making one
// call at a time per connection. It returns the reply on a 2xx; ErrNoHandler when no
// handler takes the event; a *RejectError on 4xx/5xx; otherwise an error wrapping
// ErrUnavailable or ErrBadResponse.
func (c *Client) UserEvent(ctx context.Context, conn Conn, event, contentType string, data []byte) (*EventResponse, error) {
	if c.closing.Load() {
		return nil, ErrClosed
	}
	h, ok := c.userHandler(conn.Hub, event)
	if !ok {
		return nil, ErrNoHandler
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	ev := c.newEvent(kindUser, event, conn, contentType, data)
	r, err := c.send(ctx, &h, ev)
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, rejection(kindUser, r)
	}
	state, err := connectionState(r.header)
	if err != nil {
		return nil, fmt.Errorf("upstream: user event %q: %w", event, err)
	}
	return &EventResponse{Status: r.status, ContentType: r.header.Get("Content-Type"), Body: r.body, State: state}, nil
}
