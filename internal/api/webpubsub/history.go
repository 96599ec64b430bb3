package webpubsub

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

// This file is Switchboard's catch-up read of a group's durable history:
// GET /api/hubs/{hub}/groups/{group}/messages?after={offset}&limit={n}[&epoch={epoch}].

// historyEntry is a message of the page: its data as the JSON subprotocols carry it.
type historyEntry struct {
	durable.Entry
	DataType string          `json:"dataType"`
	Data     json.RawMessage `json:"data"`
}

func (h *handler) groupMessages(c *call) error {
	rd, err := durable.ParseRead(c.query.Lookup)
	if err != nil {
		return err
	}
	group := c.params.Group
	page, err := rd.From(h.history, c.hub.Name(), group)
	if err != nil {
		return fromCore(err, group)
	}
	body := durable.NewPage(group, page, func(r *history.Record) historyEntry {
		return historyEntry{Entry: durable.NewEntry(r), DataType: core.DataType(r.Type).String(), Data: jsonData(core.DataType(r.Type), r.Data)}
	})
	v := c.query.Get("api-version")
	if v == "" {
		v = defaultAPIVersion
	}
	body.NextLink = rd.NextLink(c.endpoint()+c.r.URL.EscapedPath(), page, url.Values{"api-version": {v}})
	writeJSON(c.w, http.StatusOK, "application/json; charset=utf-8", body)
	return nil
}

// jsonData is a payload as the JSON subprotocols carry it: JSON as is, text
// as a string, binary as base64.
func jsonData(t core.DataType, data []byte) json.RawMessage {
	switch t {
	case core.JSON:
		if json.Valid(data) {
			return data
		}
		fallthrough
	case core.Text:
		b, _ := json.Marshal(string(data))
		return b
	default:
		b, _ := json.Marshal(base64.StdEncoding.EncodeToString(data))
		return b
	}
}
