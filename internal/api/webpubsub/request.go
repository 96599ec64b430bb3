package webpubsub

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	raw    http.ResponseWriter // the server's writer, for http.MaxBytesReader
	r      *http.Request
	params params     // validated by bind
	hub    *core.Hub  // the {hub} of the path
	query  url.Values // keys lower-cased: query parameter names are case-insensitive
}

// parseQuery parses the query string strictly: a malformed one is a 400
// rather than silently losing a parameter such as filter or excluded.
func parseQuery(raw string) (url.Values, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("query", "Invalid query string: %v.", err)
	}
	q := make(url.Values, len(v))
	for k, vs := range v {
		lk := strings.ToLower(k)
		q[lk] = append(q[lk], vs...)
	}
	return q, nil
}

// has reports whether the query names the parameter.
func (c *call) has(name string) bool {
	_, ok := c.query[strings.ToLower(name)]
	return ok
}

// get returns the first value of a query parameter, "" when absent.
func (c *call) get(name string) string { return c.query.Get(strings.ToLower(name)) }

// all returns every value of a repeated query parameter.
func (c *call) all(name string) []string { return c.query[strings.ToLower(name)] }

// intParam parses an optional integer parameter within [lo, hi]; def when
// absent.
func (c *call) intParam(name string, lo, hi, def int) (int, error) {
	if !c.has(name) {
		return def, nil
	}
	s := c.get(name)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < lo || n > hi {
		if hi == maxInt {
			return 0, badRequest(name, "Invalid %s %q: it must be an integer of at least %d.", name, s, lo)
		}
		return 0, badRequest(name, "Invalid %s %q: it must be an integer between %d and %d.", name, s, lo, hi)
	}
	return n, nil
}

const maxInt = int(^uint(0) >> 1)

// excluded returns the excluded conn ids, given as repeated keys
// (?excluded=c1&excluded=c2).
func (c *call) excluded() []string {
	var ids []string
	for _, id := range c.all("excluded") {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// filter parses the filter parameter; nil when absent or blank.
func (c *call) filter() (*odata.Filter, error) {
	return parseFilter(c.get("filter"))
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
			hub, err := h.node.ViewHub(c.params.hub) // made only by what keeps state (durable sends)
			if err != nil {
				return fromCore(err, c.params.hub)
			}
			c.hub = hub
		case "{group}":
			if !core.ValidGroupName(c.params.group) {
				return errInvalidGroup("group")
			}
		case "{user}":
			if c.params.user == "" {
				return badRequest("userId", "Invalid user id: it must not be empty.")
			}
		case "{conn}":
			if c.params.conn == "" {
				return badRequest("connectionId", "Invalid connection id: it must not be empty.")
			}
		}
	}
	return nil
}

// readBody reads the whole body, bounded by max: a larger one is a 413.
func (c *call) readBody(max int64) ([]byte, error) {
	if c.r.Body == nil {
		return nil, nil
	}
	if c.r.ContentLength > max {
		return nil, errTooLarge(max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.raw, c.r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge(max)
		}
		return nil, badRequest("body", "Could not read the request body: %v.", err)
	}
	return b, nil
}

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
			return nil, badRequest("body", "The message is not valid JSON: %v.", err)
		}
		body = buf.Bytes()
	case typ == core.Text && !utf8.Valid(body):
		return nil, badRequest("body", "The text/plain message is not valid UTF-8.")
	}
	return &core.Message{Type: typ, Data: body}, nil
}

// endpoint returns the scheme and host the client used, as
// "scheme://host", honouring X-Forwarded-Proto and X-Forwarded-Host.
func (c *call) endpoint() string {
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	if p := firstForwarded(c.r.Header.Get("X-Forwarded-Proto")); p != "" {
		if p = strings.ToLower(p); p == "http" || p == "https" {
			scheme = p
		}
	}
	host := c.r.Host
	if fh := firstForwarded(c.r.Header.Get("X-Forwarded-Host")); fh != "" {
		host = fh
	}
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + strings.ToLower(host)
}

// firstForwarded returns the first entry of a comma-separated forwarding
// header.
func firstForwarded(v string) string {
	first, _, _ := strings.Cut(v, ",")
	first = strings.TrimSpace(first)
	if strings.ContainsAny(first, " /\\?#@") {
		return ""
	}
	return first
}
