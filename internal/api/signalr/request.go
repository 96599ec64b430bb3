package signalr

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/internal/core"
)

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	status int // the status written; 0 until the operation answers
	gen    apiGen
	p      params    // path variables, validated
	hub    *core.Hub // the internal hub: [application_]hub, lower-cased; nil without {hub}
	query  url.Values
}

// newCall parses the query strictly (a malformed one would silently lose excluded or ttl) and
// validates the path variables of pattern: hub (and application) names, group names, and
// non-empty ids.
func (h *handler) newCall(w http.ResponseWriter, r *http.Request, gen apiGen, pattern []string, p params) (*call, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query", "Invalid query string: %v.", err)
	}
	c := &call{w: w, r: r, gen: gen, p: p, query: q}
	for _, seg := range pattern {
		switch seg {
		case "{hub}":
			if err := h.bindHub(c); err != nil {
				return nil, err
			}
		case "{group}":
			if !core.ValidGroupName(p.group) {
				return nil, badRequest("group", msgInvalidGroup)
			}
		case "{user}":
			if p.user == "" {
				return nil, badRequest("user", "Invalid user id: it must not be empty.")
			}
		case "{conn}":
			if p.conn == "" {
				return nil, badRequest("connectionId", "Invalid connection id: it must not be empty.")
			}
		}
	}
	return c, nil
}

// bindHub resolves the internal hub: lower(application)+"_"+lower(hub) when the application
// parameter is set, else lower(hub) (spec §7.1).
func (h *handler) bindHub(c *call) error {
	name := c.p.hub
	if !core.ValidHubName(name) {
		return badRequest("hub", msgInvalidHub)
	}
	if app := c.param("application"); app != "" {
		if !core.ValidHubName(app) {
			return badRequest("application", "Invalid application name. It follows the rules of hub names: start with a letter, then letters, digits and the characters _`,.[] (at most 128 characters).")
		}
		name = strings.ToLower(app) + "_" + strings.ToLower(name)
		if !core.ValidHubName(name) {
			return badRequest("application", "The application and hub names together (%s) are longer than 128 characters.", name)
		}
	}
	hub, err := h.node.ViewHub(name) // made only by what keeps state (tags, durable sends)
	if err != nil {
		return answer(err, name)
	}
	c.hub = hub
	return nil
}

// values returns every value of a query parameter; names are matched ignoring case.
func (c *call) values(name string) []string {
	if vs, ok := c.query[name]; ok {
		return vs
	}
	var vs []string
	for k, v := range c.query {
		if strings.EqualFold(k, name) {
			vs = append(vs, v...)
		}
	}
	return vs
}

// param returns the first value of a query parameter, "" when absent.
func (c *call) param(name string) string {
	if vs := c.values(name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// number parses an optional integer parameter within [lo, hi]; present reports whether it was
// given.
func (c *call) number(name string, lo, hi int64) (n int64, present bool, err error) {
	vs := c.values(name)
	if len(vs) == 0 {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, true, badRequest(name, "Invalid %s %q: it must be an integer from %d to %d.", name, vs[0], lo, hi)
	}
	return n, true, nil
}

// excluded returns the excluded connection ids (?excluded=c1&excluded=c2; empty ones dropped).
func (c *call) excluded() []string {
	var ids []string
	for _, id := range c.values("excluded") {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// body reads the request body, bounded by max: a longer one is a 413.
func (c *call) body(max int64) ([]byte, error) {
	if c.r.Body == nil || c.r.Body == http.NoBody {
		return nil, nil
	}
	tooLarge := fail(http.StatusRequestEntityTooLarge, codeTooLarge, "body",
		"The request body is larger than the limit of %d bytes.", max)
	if c.r.ContentLength > max {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, max))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case err != nil:
		return nil, badRequest("body", "Could not read the request body: %v.", err)
	}
	return b, nil
}

// baseURL is the public base URL: Config.Endpoint, else the scheme and host the request
// reached.
func (h *handler) baseURL(c *call) string {
	if h.endpoint != nil {
		if ep := h.endpoint(); ep != "" {
			return strings.TrimRight(ep, "/")
		}
	}
	scheme := "http"
	if c.r.TLS != nil {
		scheme = "https"
	}
	host := c.r.Host
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + host
}

// reply answers 200 with v as the JSON body.
func (c *call) reply(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("signalr: encode answer: %w", err)
	}
	c.status = http.StatusOK
	writeBody(c.w, c.status, contentJSON, b)
	return nil
}
