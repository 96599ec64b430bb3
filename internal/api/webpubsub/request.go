package webpubsub

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/api/rest"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	raw    http.ResponseWriter // the server's writer, for http.MaxBytesReader
	r      *http.Request
	params rest.Params // validated by bind
	hub    *core.Hub   // the {hub} of the path
	query  rest.Query
	public string // Config.PublicEndpoint
}

// intParam parses an optional integer parameter within [lo, hi]; def when
// absent.
func (c *call) intParam(name string, lo, hi, def int) (int, error) {
	n, present, err := c.query.Int(name, int64(lo), int64(hi))
	if !present {
		return def, nil
	}
	return int(n), err
}

// filter parses the filter parameter; nil when absent or blank.
func (c *call) filter() (*odata.Filter, error) {
	return parseFilter(c.query.Get("filter"))
}

func parseFilter(s string) (*odata.Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	f, err := odata.Parse(s)
	if err != nil {
		return nil, newFilterError(err)
	}
	return f, nil
}

// messageTTL validates messageTtlSeconds (0..300, 0 = never expires).
func (c *call) messageTTL() (time.Duration, error) {
	n, err := c.intParam("messageTtlSeconds", 0, 300, 0)
	return time.Duration(n) * time.Second, err
}

// bind validates the path variables of pattern, in order, and resolves the
// hub without making it (core.Node.ViewHub).
func (h *handler) bind(c *call, pattern []string) error {
	for _, seg := range pattern {
		switch seg {
		case "{hub}":
			hub, err := h.node.ViewHub(c.params.Hub) // made only by what keeps state (durable sends)
			if err != nil {
				return fromCore(err, c.params.Hub)
			}
			c.hub = hub
		case "{group}":
			if !core.ValidGroupName(c.params.Group) {
				return errInvalidGroup("group")
			}
		case "{user}":
			if c.params.User == "" {
				return badRequest("userId", "Invalid user id: it must not be empty.")
			}
		case "{conn}":
			if c.params.Conn == "" {
				return badRequest("connectionId", "Invalid connection id: it must not be empty.")
			}
		}
	}
	return nil
}

// readBody reads the whole body, bounded by max: a larger one is a 413.
func (c *call) readBody(max int64) ([]byte, error) { return rest.ReadBody(c.raw, c.r, max) }

// mediaType returns the request's media type, lower-cased, "" when there is
// no Content-Type. A parameter that does not parse is ignored.
func (c *call) mediaType() (string, error) {
	ct := c.r.Header.Get("Content-Type")
	if strings.TrimSpace(ct) == "" {
		return "", nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && !(errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "") {
		return "", errMediaType(ct)
	}
	return mt, nil
}

// message reads a :send body into a message: text/plain is Text,
// application/json JSON (validated and compacted), application/octet-stream
// or no Content-Type Binary; any other type is a 415.
func (c *call) message(max int64) (*core.Message, error) {
	mt, err := c.mediaType()
	if err != nil {
		return nil, err
	}
	var typ core.DataType
	switch mt {
	case "text/plain":
		typ = core.Text
	case "application/json":
		typ = core.JSON
	case "application/octet-stream", "":
		typ = core.Binary
	default:
		return nil, errMediaType(c.r.Header.Get("Content-Type"))
	}
	body, err := c.readBody(max)
	if err != nil {
		return nil, err
	}
	switch {
	case typ == core.JSON && len(body) == 0:
		// An empty body is no JSON value; deliver it as empty text rather
		// than as a broken JSON frame.
		typ = core.Text
	case typ == core.JSON:
		if !utf8.Valid(body) {
			return nil, badRequest("body", "The message is not valid UTF-8.")
		}
		var buf bytes.Buffer
		buf.Grow(len(body))
		if err := json.Compact(&buf, body); err != nil {
			return nil, badRequest("body", "The message is not valid JSON: %s.", excerpt.Error(err))
		}
		body = buf.Bytes()
	case typ == core.Text && !utf8.Valid(body):
		return nil, badRequest("body", "The text/plain message is not valid UTF-8.")
	}
	return &core.Message{Type: typ, Data: body}, nil
}

// endpoint returns the public base URL of links and token audiences,
// "scheme://host" (rest.BaseURL).
func (c *call) endpoint() string { return rest.BaseURL(c.r, c.public) }
