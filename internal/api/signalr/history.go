package signalr

import (
	"encoding/base64"
	"encoding/json"
	"net/url"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// This file is Switchboard's catch-up read of a group's durable history on the SignalR listener:
// GET /api[/v1]/hubs/{hub}/groups/{group}/messages?after={offset}&limit={n}[&epoch={epoch}],
// paged like the Web PubSub API's (package durable), each message as the invocation it was.

// historyEntry is a message of the page. A JSON send, and a multi-protocol send with a "json"
// payload, give the invocation's target and arguments; a multi-protocol send with only other
// protocols gives its target and the body as sent (base64), which can be sent again as
// application/octet-stream.
type historyEntry struct {
	durable.Entry
	Target    string          `json:"target,omitempty"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	Data      string          `json:"data,omitempty"`
}

func (h *handler) groupMessages(c *call) error {
	rd, err := durable.ParseRead(c.query.Lookup)
	if err != nil {
		return err
	}
	page, err := rd.From(h.history, c.hub.Name(), c.p.Group)
	if err != nil {
		return answer(err, c.p.Group)
	}
	body := durable.NewPage(c.p.Group, page, newHistoryEntry)
	keep := url.Values{}
	for _, k := range []string{"api-version", "application"} {
		if v := c.query.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	body.NextLink = rd.NextLink(h.baseURL(c)+c.r.URL.EscapedPath(), page, keep)
	return c.reply(body)
}

// newHistoryEntry is the entry of a record: its data is what send stored, the canonical JSON
// invocation (core.JSON) or the multi-protocol payload (core.Binary).
func newHistoryEntry(r *history.Record) historyEntry {
	e := historyEntry{Entry: durable.NewEntry(r)}
	inv := r.Data
	if core.DataType(r.Type) == core.Binary {
		var target string
		inv, target = jsonVariant(r.Data)
		if inv == nil {
			e.Target, e.Data = target, base64.StdEncoding.EncodeToString(r.Data)
			return e
		}
	}
	var m struct {
		Target    string          `json:"target"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(inv, &m) != nil || m.Target == "" {
		// Not an invocation: a record of another writer. Give it as it is.
		e.Data = base64.StdEncoding.EncodeToString(r.Data)
		return e
	}
	e.Target, e.Arguments = m.Target, m.Arguments
	if len(e.Arguments) == 0 {
		e.Arguments = json.RawMessage("[]")
	}
	return e
}

// jsonVariant returns the unframed JSON invocation of a multi-protocol payload, or nil and the
// target of its first other protocol's invocation when it has no "json" payload.
func jsonVariant(payload []byte) (inv []byte, target string) {
	variants, err := hubproto.ParseVariants(payload)
	if err != nil {
		return nil, ""
	}
	for name, blob := range variants {
		p, known := hubproto.Lookup(name)
		if !known {
			continue
		}
		msg, _, err := p.Next(blob, 0)
		if err != nil {
			continue
		}
		if !p.Binary() {
			return msg, ""
		}
		if m, err := p.Decode(msg); err == nil && target == "" {
			target = m.Target
		}
	}
	return nil, target
}
