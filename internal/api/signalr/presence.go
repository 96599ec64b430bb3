package signalr

import "github.com/switchboardhq/switchboard/internal/core"

// This file holds Switchboard's presence reads for SignalR hubs (not in
// Azure's API), the same as the Web PubSub API's: the users online in a
// group or a hub, paged like the group listing, and a hub's counts, both
// cluster-wide.

type userEntry struct {
	UserID      string `json:"userId"`
	Connections int    `json:"connections"`
}

type userPage struct {
	Value    []userEntry `json:"value"`
	NextLink *string     `json:"nextLink"`
}

func (h *handler) listUsersInGroup(c *call) error { return h.listUsers(c, c.p.Group) }

func (h *handler) listUsersInHub(c *call) error { return h.listUsers(c, "") }

// listUsers answers one page of the users with a connection in group (the
// hub when ""), in user-id order with their connection counts summed over
// the nodes; the continuation token is the last user id, base64url.
func (h *handler) listUsers(c *call, group string) error {
	pg, err := readPaging(c)
	if err != nil {
		return err
	}
	r, err := c.do(core.Request{Kind: core.ReqListUsers, Group: group, After: pg.after, Limit: pg.limit})
	if err != nil {
		return err
	}
	page := userPage{Value: make([]userEntry, 0, len(r.Users))}
	for _, u := range r.Users {
		page.Value = append(page.Value, userEntry{UserID: u.UserID, Connections: u.Conns})
	}
	if len(r.Users) > 0 {
		page.NextLink = h.nextLink(c, pg, r.More, len(r.Users), r.Users[len(r.Users)-1].UserID)
	}
	return c.reply(page)
}

type hubPresence struct {
	Hub         string `json:"hub"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Groups      int    `json:"groups"`
	Approximate bool   `json:"approximate"`
}

// presence answers the hub's counts over the cluster.
func (h *handler) presence(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqPresence})
	if err != nil {
		return err
	}
	p := r.Presence
	if p == nil {
		p = &core.Presence{}
	}
	return c.reply(hubPresence{Hub: c.hub.Name(), Connections: p.Conns, Users: p.Users, Groups: p.Groups, Approximate: p.Approximate})
}
