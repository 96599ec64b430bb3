package webpubsub

import (
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// maxTokenMinutes keeps minutesToExpire within what a time.Duration holds.
const maxTokenMinutes = int(math.MaxInt64 / int64(time.Minute))

// defaultClientPrefix is the path prefix of the Web PubSub client endpoint.
const defaultClientPrefix = "/client/hubs/"

// clientPathPrefix maps clientType (any case) to the path prefix of the
// client endpoint its tokens are for.
func clientPathPrefix(clientType string) (string, bool) {
	switch strings.ToLower(clientType) {
	case "", "default":
		return defaultClientPrefix, true
	case "mqtt":
		return "/clients/mqtt/hubs/", true
	case "socketio":
		return "/clients/socketio/hubs/", true
	}
	return "", false
}

type tokenResponse struct {
	Token string `json:"token"`
}

// generateToken mints a client access token for the hub: sub = userId, role
// and webpubsub.group from the repeated role and group parameters, a
// lifetime of minutesToExpire (default 60) and aud = the endpoint the
// request reached + the client path for clientType.
func (h *handler) generateToken(c *call) error {
	minutes, err := c.intParam("minutesToExpire", 1, maxTokenMinutes, 60)
	if err != nil {
		return err
	}
	prefix, ok := clientPathPrefix(c.query.Get("clientType"))
	if !ok {
		return badRequest("clientType", "Invalid clientType %s. Valid values are 'Default', 'MQTT' and 'SocketIO'.", excerpt.Quote(c.query.Get("clientType")))
	}
	groups := c.query.All("group")
	for _, g := range groups {
		if !core.ValidGroupName(g) {
			return errInvalidGroup("group")
		}
	}
	var roles []string
	for _, r := range c.query.All("role") {
		if r != "" {
			roles = append(roles, r)
		}
	}
	// The hub keeps the case the caller used, as the SDKs' own audiences do.
	ep := c.endpoint()
	aud := ep + prefix + url.PathEscape(c.params.Hub)
	if prefix == defaultClientPrefix {
		aud = auth.ClientAudience(ep, c.params.Hub)
	}
	token, err := h.keys.MintClientToken(aud, auth.MintOptions{
		UserID: c.query.Get("userId"),
		Roles:  roles,
		Groups: groups,
		TTL:    time.Duration(minutes) * time.Minute,
	})
	if err != nil {
		return fromCore(err, "")
	}
	b, err := marshal(tokenResponse{Token: token})
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
	return nil
}
