package webpubsub

import (
	"net/http"
	"time"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
)

// This file holds the operations on messages and sessions: health, the
// :send and :closeConnections operations and the existence checks. Path
// variables are validated (and the hub resolved) before they run.

func (h *handler) health(c *call) error {
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// send validates the query and body of a :send operation and sends the
// message to t; 202 even when no conn matches.
func (h *handler) send(c *call, t core.Target) error {
	ttl, err := c.messageTTL()
	if err != nil {
		return err
	}
	t.Excluded = c.query.Excluded()
	f, err := c.filter()
	if err != nil {
		return err
	}
	t.Filter = f
	m, err := c.message(h.maxBody)
	if err != nil {
		return err
	}
	if ttl > 0 {
		m.Expires = time.Now().Add(ttl)
	}
	if t.Kind == core.ToGroup {
		m.From, m.Group = core.FromGroup, t.Name
	} else {
		m.From = core.FromServer
	}
	sent, err := h.sends.Send(c.r.Context(), c.r.Header.Get(durable.HeaderKey), c.hub, t, m)
	if err != nil {
		return fromCore(err, t.Name)
	}
	sent.SetHeaders(c.w.Header())
	c.w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *handler) sendToAll(c *call) error {
	return h.send(c, core.Target{Kind: core.ToAll})
}

func (h *handler) sendToGroup(c *call) error {
	return h.send(c, core.Target{Kind: core.ToGroup, Name: c.params.Group})
}

func (h *handler) sendToUser(c *call) error {
	return h.send(c, core.Target{Kind: core.ToUser, Name: c.params.User})
}

func (h *handler) sendToConnection(c *call) error {
	return h.send(c, core.Target{Kind: core.ToConn, Name: c.params.Conn})
}

// closeConns closes the conns of t (minus excluded) with the reason
// parameter; 204 even when none matched.
func (h *handler) closeConns(c *call, t core.Target) error {
	t.Excluded = c.query.Excluded()
	if err := c.hub.CloseConns(c.r.Context(), t, c.query.Get("reason")); err != nil {
		return fromCore(err, t.Name)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) closeAll(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToAll})
}

func (h *handler) closeGroup(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToGroup, Name: c.params.Group})
}

func (h *handler) closeUser(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToUser, Name: c.params.User})
}

func (h *handler) closeConnection(c *call) error {
	return h.closeConns(c, core.Target{Kind: core.ToConn, Name: c.params.Conn})
}

// exists answers a HEAD check: 200, or 404 with warning and no body.
func exists(c *call, ok bool, warning string) error {
	if !ok {
		writeWarning(c.w, warning)
		return nil
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) connectionExists(c *call) error {
	return h.check(c, core.Request{Kind: core.ReqConnExists, Conn: c.params.Conn}, warnConnNotExisted)
}

func (h *handler) groupExists(c *call) error {
	return h.check(c, core.Request{Kind: core.ReqGroupExists, Group: c.params.Group}, warnGroupNotExisted)
}

func (h *handler) userExists(c *call) error {
	return h.check(c, core.Request{Kind: core.ReqUserExists, User: c.params.User}, warnUserNotExisted)
}

// check answers an existence check run where the state is (every node for
// a user or group): 200, 404 with warning, or the cluster's 503.
func (h *handler) check(c *call, req core.Request, warning string) error {
	r, err := c.hub.Do(c.r.Context(), req)
	if err != nil {
		return fromCore(err, "")
	}
	return exists(c, r.OK, warning)
}
