package durable

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/history"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Page sizes of the catch-up read.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrInvalidQuery is the cause of the answer to a malformed after or limit parameter.
var ErrInvalidQuery = errors.New("durable: invalid catch-up query")

// Read is the query of a catch-up read,
// GET …/groups/{group}/messages?after={offset}&limit={n}[&epoch={epoch}].
type Read struct {
	After uint64 // the page starts after this offset; 0 (the default): from the oldest
	Limit int    // 1 … MaxLimit, DefaultLimit when absent
	Epoch string // when not "", the stream's epoch must be this one
}

// ParseRead reads after, limit and epoch with get, which returns a query parameter's first
// value and whether it is present (each API matches names its own way). Errors are 400
// *Failure values naming the parameter.
func ParseRead(get func(name string) (string, bool)) (Read, error) {
	rd := Read{Limit: DefaultLimit}
	if s, ok := get("after"); ok {
		s = strings.TrimSpace(s)
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return Read{}, badRequest("after", ErrInvalidQuery, "Invalid after %s: it must be an offset (a non-negative integer).", excerpt.Quote(s))
		}
		rd.After = n
	}
	if s, ok := get("limit"); ok {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > MaxLimit {
			return Read{}, badRequest("limit", ErrInvalidQuery, "Invalid limit %s: it must be an integer between 1 and %d.", excerpt.Quote(s), MaxLimit)
		}
		rd.Limit = n
	}
	rd.Epoch, _ = get("epoch")
	return rd, nil
}

// Reader reads a group's stream; history.Service and history.Namespaced implement it.
type Reader interface {
	CatchUp(hub, group string, after uint64, epoch string, limit int) (history.Messages, error)
}

// History is what a REST API needs of a namespace's history: the catch-up
// read and the count of sends answered from the idempotency index
// (history.Service, history.Namespaced).
type History interface {
	Reader
	ReplayCounter
}

// From reads the page of group's stream in hub. A nil h keeps no history. Errors of the read
// are *Failure values: 404 for a group without history, 410 for an offset older than the
// retention or another epoch, 400 for an offset beyond the stream; others come back as they
// are.
func (rd Read) From(h Reader, hub, group string) (history.Messages, error) {
	if h == nil {
		return history.Messages{}, readFailure(history.ErrNotKept, group, rd.After, history.Messages{})
	}
	page, err := h.CatchUp(hub, group, rd.After, rd.Epoch, rd.Limit)
	if err != nil {
		return page, readFailure(err, group, rd.After, page)
	}
	return page, nil
}

// NextLink is the link to the page after m, or nil when m is the last one: link followed by
// the query of the next read (after the page's last offset, the same limit, the stream's
// epoch) and the parameters of keep.
func (rd Read) NextLink(link string, m history.Messages, keep url.Values) *string {
	if !m.More || len(m.Records) == 0 {
		return nil
	}
	q := url.Values{}
	for k, vs := range keep {
		q[k] = vs
	}
	q.Set("after", strconv.FormatUint(m.Records[len(m.Records)-1].Offset, 10))
	q.Set("limit", strconv.Itoa(rd.Limit))
	q.Set("epoch", m.Epoch)
	link += "?" + q.Encode()
	return &link
}

// Page is the body of a catch-up read; E is the API's message entry (it embeds Entry).
type Page[E any] struct {
	Group    string  `json:"group"`
	Epoch    string  `json:"epoch"`
	Offset   uint64  `json:"offset"` // the stream's last durable offset
	Oldest   uint64  `json:"oldest"` // its first retained offset
	Messages []E     `json:"messages"`
	NextLink *string `json:"nextLink"`
}

// NewPage is the body of the page m of group, each record written by entry.
func NewPage[E any](group string, m history.Messages, entry func(*history.Record) E) Page[E] {
	p := Page[E]{Group: group, Epoch: m.Epoch, Offset: m.Offset, Oldest: m.Oldest, Messages: make([]E, len(m.Records))}
	for i := range m.Records {
		p.Messages[i] = entry(&m.Records[i])
	}
	return p
}

// Entry is what every API says of a message of the stream.
type Entry struct {
	Offset     uint64 `json:"offset"`
	Time       string `json:"time"` // RFC 3339, UTC, when the server took it
	FromUserID string `json:"fromUserId,omitempty"`
}

// NewEntry is the Entry of r.
func NewEntry(r *history.Record) Entry {
	return Entry{Offset: r.Offset, Time: time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano), FromUserID: r.FromUserID}
}
