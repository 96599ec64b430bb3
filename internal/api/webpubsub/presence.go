package webpubsub

import (
	"net/http"

	"github.com/switchboardhq/switchboard/internal/core"
)

// This file holds Switchboard's presence reads (not in Azure's API): the
// users online in a group or a hub, paged like the group listing, and a
// hub's counts. Both are cluster-wide (core.Hub.Do asks every node).

// userEntry is one entry of a users listing.
type userEntry struct {
	UserID      string `json:"userId"`
	Connections int    `json:"connections"`
}

type userPage struct {
	Value    []userEntry `json:"value"`
	NextLink string      `json:"nextLink,omitempty"`
}

// listUsersInGroup answers one page of the users online in the group.
func (h *handler) listUsersInGroup(c *call) error { return h.listUsers(c, c.params.Group) }

// listUsersInHub answers one page of the users online in the hub.
func (h *handler) listUsersInHub(c *call) error { return h.listUsers(c, "") }

// listUsers answers one page of the users with a connection in group
// (the hub when ""), in user-id order with their connection counts (summed
// over the nodes): min(maxpagesize, top) entries, and a nextLink carrying
// the remaining top and a continuation token (the last user id,
// base64url). Connections without a user id are not listed.
func (h *handler) listUsers(c *call, group string) error {
	pageSize, top, limit, after, err := c.paging()
	if err != nil {
		return err
	}
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqListUsers, Group: group, After: after, Limit: limit})
	if err != nil {
		return fromCore(err, group)
	}
	page := userPage{Value: make([]userEntry, 0, len(r.Users))}
	for _, u := range r.Users {
		page.Value = append(page.Value, userEntry{UserID: u.UserID, Connections: u.Conns})
	}
	remaining := 0
	if top > 0 {
		remaining = top - len(r.Users)
	}
	if r.More && len(r.Users) > 0 && (top == 0 || remaining > 0) {
		page.NextLink = c.nextLink(pageSize, remaining, r.Users[len(r.Users)-1].UserID)
	}
	return answerJSON(c, page)
}

// hubPresence is the body of GET /api/hubs/{hub}/presence.
type hubPresence struct {
	Hub         string `json:"hub"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Groups      int    `json:"groups"`
	Approximate bool   `json:"approximate"`
}

// presence answers the hub's counts over the cluster: connections, distinct
// users and distinct groups (approximate beyond core.SketchSize of them).
func (h *handler) presence(c *call) error {
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqPresence})
	if err != nil {
		return fromCore(err, "")
	}
	p := r.Presence
	if p == nil {
		p = &core.Presence{}
	}
	return answerJSON(c, hubPresence{Hub: c.hub.Name(), Connections: p.Conns, Users: p.Users, Groups: p.Groups, Approximate: p.Approximate})
}

func answerJSON(c *call, v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
	return nil
}
