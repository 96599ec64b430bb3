package signalr

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/switchboardhq/switchboard/internal/api/rest"
	"github.com/switchboardhq/switchboard/internal/core"
)

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	status int // the status written; 0 until the operation answers
	gen    apiGen
	p      rest.Params // path variables, validated
	hub    *core.Hub   // the internal hub: [application_]hub, lower-cased; nil without {hub}
	query  rest.Query
}

// newCall parses the query strictly (a malformed one would silently lose excluded or ttl) and
// validates the path variables of pattern: hub (and application) names, group names, and
// non-empty ids.
func (h *handler) newCall(w http.ResponseWriter, r *http.Request, gen apiGen, pattern []string, p rest.Params) (*call, error) {
	q, err := rest.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	c := &call{w: w, r: r, gen: gen, p: p, query: q}
	for _, seg := range pattern {
		switch seg {
		case "{hub}":
			if err := h.bindHub(c); err != nil {
				return nil, err
			}
		case "{group}":
			if !core.ValidGroupName(p.Group) {
				return nil, badRequest("group", msgInvalidGroup)
			}
		case "{user}":
			if p.User == "" {
				return nil, badRequest("user", "Invalid user id: it must not be empty.")
			}
		case "{conn}":
			if p.Conn == "" {
				return nil, badRequest("connectionId", "Invalid connection id: it must not be empty.")
			}
		}
	}
	return c, nil
}

// bindHub resolves the internal hub: lower(application)+"_"+lower(hub) when the application
// parameter is set, else lower(hub) (spec §7.1).
func (h *handler) bindHub(c *call) error {
	name := c.p.Hub
	if !core.ValidHubName(name) {
		return badRequest("hub", msgInvalidHub)
	}
	if app := c.query.Get("application"); app != "" {
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

// body reads the request body, bounded by max: a longer one is a 413.
func (c *call) body(max int64) ([]byte, error) { return rest.ReadBody(c.w, c.r, max) }

// baseURL is the public base URL of links and token audiences (rest.BaseURL).
func (h *handler) baseURL(c *call) string { return rest.BaseURL(c.r, h.public) }

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
