package webpubsub

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
)

// This file is Switchboard's catch-up read of a group's durable history:
// GET /api/hubs/{hub}/groups/{group}/messages?after={offset}&limit={n}[&epoch={epoch}].

// Page sizes of the catch-up read.
const (
	defaultMessagesLimit = 100
	maxMessagesLimit     = 1000
)

// messagesPage is the body of a catch-up read.
type messagesPage struct {
	Group    string         `json:"group"`
	Epoch    string         `json:"epoch"`
	Offset   uint64         `json:"offset"` // the stream's last durable offset
	Oldest   uint64         `json:"oldest"` // its first retained offset
	Messages []historyEntry `json:"messages"`
	NextLink *string        `json:"nextLink"`
}

type historyEntry struct {
	Offset     uint64          `json:"offset"`
	Time       string          `json:"time"`
	FromUserID string          `json:"fromUserId,omitempty"`
	DataType   string          `json:"dataType"`
	Data       json.RawMessage `json:"data"`
}

func (h *handler) groupMessages(c *call) error {
	group := c.params.group
	var after uint64
	if c.has("after") {
		s := strings.TrimSpace(c.get("after"))
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return badRequest("after", "Invalid after %q: it must be an offset (a non-negative integer).", s)
		}
		after = n
	}
	limit, err := c.intParam("limit", 1, maxMessagesLimit, defaultMessagesLimit)
	if err != nil {
		return err
	}
	epoch := c.get("epoch")
	if h.history == nil {
		return fromHistory(history.ErrNotKept, group, after, history.Messages{})
	}
	page, err := h.history.CatchUp(c.hub.Name(), group, after, epoch, limit)
	if err != nil {
		return fromHistory(err, group, after, page)
	}
	body := messagesPage{Group: group, Epoch: page.Epoch, Offset: page.Offset, Oldest: page.Oldest,
		Messages: make([]historyEntry, 0, len(page.Records))}
	for _, r := range page.Records {
		body.Messages = append(body.Messages, historyEntry{Offset: r.Offset, Time: time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano),
			FromUserID: r.FromUserID, DataType: core.DataType(r.Type).String(), Data: jsonData(core.DataType(r.Type), r.Data)})
	}
	if page.More && len(page.Records) > 0 {
		q := url.Values{}
		q.Set("after", strconv.FormatUint(page.Records[len(page.Records)-1].Offset, 10))
		q.Set("limit", strconv.Itoa(limit))
		q.Set("epoch", page.Epoch)
		v := c.get("api-version")
		if v == "" {
			v = defaultAPIVersion
		}
		q.Set("api-version", v)
		link := c.endpoint() + c.r.URL.EscapedPath() + "?" + q.Encode()
		body.NextLink = &link
	}
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
