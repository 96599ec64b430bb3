package webpubsub

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/internal/core"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// This file holds the group membership operations: one conn, one user,
// the filter-selected bulk operations and the group listing.

func (h *handler) addConnectionToGroup(c *call) error {
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqJoin, Conn: c.params.Conn, Group: c.params.Group})
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return fromCore(err, c.params.Conn)
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// removeConnectionFromGroup answers 204 whether or not the conn exists, as
// the service does.
func (h *handler) removeConnectionFromGroup(c *call) error {
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqLeave, Conn: c.params.Conn, Group: c.params.Group})
	if err == nil && r.Err != nil && !errors.Is(r.Err, core.ErrConnNotFound) {
		err = r.Err
	}
	if err != nil {
		return fromCore(err, c.params.Group)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) removeConnectionFromAllGroups(c *call) error {
	if _, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqLeaveAll, Conn: c.params.Conn}); err != nil {
		return fromCore(err, c.params.Conn)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) addUserToGroup(c *call) error {
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqAddUser, User: c.params.User, Group: c.params.Group})
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return fromCore(err, c.params.User)
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) removeUserFromGroup(c *call) error {
	if _, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqRemoveUser, User: c.params.User, Group: c.params.Group}); err != nil {
		return fromCore(err, c.params.User)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) removeUserFromAllGroups(c *call) error {
	if _, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqRemoveUser, User: c.params.User}); err != nil {
		return fromCore(err, c.params.User)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// groupsRequest is the body of :addToGroups and :removeFromGroups.
type groupsRequest struct {
	Groups []string `json:"groups"`
	Filter string   `json:"filter"`
}

// readGroupsRequest reads and validates a groups body: groups non-empty and
// valid; an empty or absent filter selects every conn of the hub.
func (c *call) readGroupsRequest(max int64) ([]string, core.Target, error) {
	var t core.Target
	mt, err := c.mediaType()
	if err != nil {
		return nil, t, err
	}
	if mt != "" && mt != "application/json" && mt != "text/json" {
		return nil, t, errMediaType(c.r.Header.Get("Content-Type"))
	}
	body, err := c.readBody(max)
	if err != nil {
		return nil, t, err
	}
	var req groupsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, t, badRequest("body", `The body must be a JSON object {"groups":[…],"filter":"…"}: %s.`, excerpt.Error(err))
	}
	if len(req.Groups) == 0 {
		return nil, t, badRequest("groups", "The groups list must not be empty.")
	}
	for _, g := range req.Groups {
		if !core.ValidGroupName(g) {
			return nil, t, errInvalidGroup("groups")
		}
	}
	t.Filter, err = parseFilter(req.Filter)
	if err != nil {
		return nil, t, err
	}
	return req.Groups, t, nil
}

func (h *handler) addToGroups(c *call) error {
	return h.bulkGroups(c, core.ReqAddToGroups)
}

func (h *handler) removeFromGroups(c *call) error {
	return h.bulkGroups(c, core.ReqRemoveFromGroups)
}

// bulkGroups runs :addToGroups or :removeFromGroups on every node (a conn
// at its group limit is skipped, as on the service).
func (h *handler) bulkGroups(c *call, kind core.ReqKind) error {
	groups, t, err := c.readGroupsRequest(h.maxBody)
	if err != nil {
		return err
	}
	if _, err := c.hub.Do(c.r.Context(), core.Request{Kind: kind, Groups: groups, Filter: t.Filter}); err != nil {
		return fromCore(err, "")
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

// Paging of ListConnectionsInGroup.
const (
	maxPageSize = 200
)

// groupMember is one entry of the listing; UserID is null when anonymous.
type groupMember struct {
	ConnectionID string  `json:"connectionId"`
	UserID       *string `json:"userId"`
}

type groupPage struct {
	Value    []groupMember `json:"value"`
	NextLink string        `json:"nextLink,omitempty"`
}

// listConnectionsInGroup answers one page of the group's members, in conn
// id order: min(maxpagesize, top) entries, and a nextLink carrying the
// remaining top and a continuation token (the last conn id, base64url).
func (h *handler) listConnectionsInGroup(c *call) error {
	pageSize, top, limit, after, err := c.paging()
	if err != nil {
		return err
	}
	// The page of the whole cluster: every node's first limit members
	// after the cursor, merged in conn-id order.
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqListGroup, Group: c.params.Group, After: after, Limit: limit})
	if err != nil {
		return fromCore(err, c.params.Group)
	}
	members, more := r.Members, r.More
	page := groupPage{Value: make([]groupMember, 0, len(members))}
	for _, m := range members {
		gm := groupMember{ConnectionID: m.ConnID}
		if m.UserID != "" {
			gm.UserID = &m.UserID
		}
		page.Value = append(page.Value, gm)
	}
	remaining := 0
	if top > 0 {
		remaining = top - len(members)
	}
	if more && len(members) > 0 && (top == 0 || remaining > 0) {
		page.NextLink = c.nextLink(pageSize, remaining, members[len(members)-1].ConnID)
	}
	b, err := marshal(page)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	c.w.Write(b)
	return nil
}

// paging reads a listing's query: maxpagesize, top, the page's size
// (min(maxpagesize, top)) and the cursor its continuationToken carries.
func (c *call) paging() (pageSize, top, limit int, after string, err error) {
	pageSize, err = c.intParam("maxpagesize", 1, maxPageSize, maxPageSize)
	if err != nil {
		return
	}
	top, err = c.intParam("top", 1, math.MaxInt, 0)
	if err != nil {
		return
	}
	limit = pageSize
	if top > 0 && top < limit {
		limit = top
	}
	if tok := c.query.Get("continuationToken"); tok != "" {
		b, derr := base64.RawURLEncoding.DecodeString(strings.TrimRight(tok, "="))
		if derr != nil || len(b) == 0 {
			return 0, 0, 0, "", badRequest("continuationToken", "Invalid continuationToken.")
		}
		after = string(b)
	}
	return
}

// nextLink is the absolute URL of the next page; top 0 means no top.
func (c *call) nextLink(pageSize, top int, lastConn string) string {
	v := c.query.Get("api-version")
	if v == "" {
		v = defaultAPIVersion
	}
	var b strings.Builder
	b.WriteString(c.endpoint())
	b.WriteString(c.r.URL.EscapedPath())
	b.WriteString("?api-version=")
	b.WriteString(url.QueryEscape(v))
	b.WriteString("&maxpagesize=")
	b.WriteString(strconv.Itoa(pageSize))
	if top > 0 {
		b.WriteString("&top=")
		b.WriteString(strconv.Itoa(top))
	}
	b.WriteString("&continuationToken=")
	b.WriteString(base64.RawURLEncoding.EncodeToString([]byte(lastConn)))
	return b.String()
}
