package signalr

import (
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// The operations of spec §7.3 and §7.7. Each returns nil for success (the route writes its
// status) or an error that errors.go turns into the answer.

// send parses the body as a hub-protocol payload and sends it to the target, once per
// Idempotency-Key. Every send answers 202, whether or not anybody receives it; a message of a
// group that keeps history carries its offset and epoch in the answer's headers.
func (h *handler) send(c *call, kind core.TargetKind, name string) error {
	body, err := c.body(h.maxBody)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return badRequest("body", msgBodyRequired)
	}
	p, err := hubproto.ParsePayload(c.r.Header.Get("Content-Type"), body)
	if errors.Is(err, hubproto.ErrUnsupportedMediaType) {
		return fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type", "%s", err.Error()) // hubproto quotes the type in part
	}
	if err != nil {
		return badRequest("body", "%s", excerpt.Error(err))
	}
	m := &core.Message{Type: core.JSON, Data: p.Invocation}
	if p.Variants != nil {
		m = &core.Message{Type: core.Binary, Data: p.Variants}
	}
	t := core.Target{Kind: kind, Name: name, Excluded: c.query.Excluded()}
	sent, err := h.sends.Send(c.r.Context(), c.r.Header.Get(durable.HeaderKey), c.hub, t, m)
	if err != nil {
		return answer(err, name)
	}
	sent.SetHeaders(c.w.Header())
	return nil
}

func (h *handler) broadcast(c *call) error        { return h.send(c, core.ToAll, "") }
func (h *handler) sendToUser(c *call) error       { return h.send(c, core.ToUser, c.p.User) }
func (h *handler) sendToGroup(c *call) error      { return h.send(c, core.ToGroup, c.p.Group) }
func (h *handler) sendToConnection(c *call) error { return h.send(c, core.ToConn, c.p.Conn) }

// closeConns closes the target's connections with the reason parameter; core's OnConnEnd
// turns each close into the upstream disconnected event.
func (h *handler) closeConns(c *call, kind core.TargetKind, name string) error {
	t := core.Target{Kind: kind, Name: name, Excluded: c.query.Excluded()}
	if err := c.hub.CloseConns(c.r.Context(), t, c.query.Get("reason")); err != nil {
		return answer(err, name)
	}
	return nil
}

func (h *handler) closeAll(c *call) error   { return h.closeConns(c, core.ToAll, "") }
func (h *handler) closeUser(c *call) error  { return h.closeConns(c, core.ToUser, c.p.User) }
func (h *handler) closeGroup(c *call) error { return h.closeConns(c, core.ToGroup, c.p.Group) }

// closeConnection answers success even for an unknown id, as the emulator does: in a cluster
// the connection may live on another node.
func (h *handler) closeConnection(c *call) error { return h.closeConns(c, core.ToConn, c.p.Conn) }

// do runs req where the conns are (core.Hub.Do): on the conn's node, or on
// every node for a user or group; it fails when a node could not be asked.
func (c *call) do(req core.Request) (core.Reply, error) {
	r, err := c.hub.Do(c.r.Context(), req)
	if err != nil {
		return r, answer(err, "")
	}
	return r, nil
}

func (h *handler) connectionExists(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqConnExists, Conn: c.p.Conn})
	if err != nil {
		return err
	}
	if !r.OK {
		return notFound(warnConnNotExisted, "Connection '%s' does not exist.", excerpt.Of(c.p.Conn))
	}
	return nil
}

func (h *handler) userExists(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqUserExists, User: c.p.User})
	if err != nil {
		return err
	}
	if !r.OK {
		return notFound(warnUserNotExisted, "User '%s' does not exist.", excerpt.Of(c.p.User))
	}
	return nil
}

func (h *handler) groupExists(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqGroupExists, Group: c.p.Group})
	if err != nil {
		return err
	}
	if !r.OK {
		return notFound(warnGroupNotExisted, "Group '%s' does not exist.", excerpt.Of(c.p.Group))
	}
	return nil
}

func (h *handler) userInGroup(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqUserInGroup, User: c.p.User, Group: c.p.Group})
	if err != nil {
		return err
	}
	if !r.OK {
		return notFound(infoUserNotInGroup, "User '%s' is not in group '%s'.", excerpt.Of(c.p.User), excerpt.Of(c.p.Group))
	}
	return nil
}

// addConnectionToGroup answers 404 Error.Connection.NotExisted for an unknown connection,
// the one failure the SDK tolerates.
func (h *handler) addConnectionToGroup(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqJoin, Conn: c.p.Conn, Group: c.p.Group})
	if err != nil {
		return err
	}
	if r.Err != nil {
		return answer(r.Err, c.p.Conn)
	}
	return nil
}

// removeConnectionFromGroup succeeds when there was nothing to remove (spec §12.5: the SDK
// throws on any non-2xx).
func (h *handler) removeConnectionFromGroup(c *call) error {
	r, err := c.do(core.Request{Kind: core.ReqLeave, Conn: c.p.Conn, Group: c.p.Group})
	if err != nil {
		return err
	}
	if r.Err != nil && !errors.Is(r.Err, core.ErrConnNotFound) {
		return r.Err
	}
	return nil
}

func (h *handler) removeConnectionFromAllGroups(c *call) error {
	_, err := c.do(core.Request{Kind: core.ReqLeaveAll, Conn: c.p.Conn})
	return err
}

// maxTagSeconds bounds ttl so that it fits a time.Duration.
const maxTagSeconds = math.MaxInt64 / int64(time.Second)

// addUserToGroup tags the user with the group (spec §7.6): no ttl keeps the tag without
// expiry, ttl=0 adds only the user's current connections, ttl=N keeps it N seconds.
func (h *handler) addUserToGroup(c *call) error {
	secs, present, err := c.query.Int("ttl", 0, maxTagSeconds)
	if err != nil {
		return err
	}
	ttl := time.Duration(secs) * time.Second
	// Every node records the tag (so that the user's future conns join
	// on whichever node they land) and adds the user's conns it holds.
	r, err := c.do(core.Request{Kind: core.ReqTagUser, User: c.p.User, Group: c.p.Group, TTL: ttl, Persist: !present || secs > 0})
	if err != nil {
		return err
	}
	if r.Err != nil {
		return answer(r.Err, c.p.User)
	}
	return nil
}

func (h *handler) removeUserFromGroup(c *call) error {
	_, err := c.do(core.Request{Kind: core.ReqUntagUser, User: c.p.User, Group: c.p.Group})
	return err
}

func (h *handler) removeUserFromAllGroups(c *call) error {
	_, err := c.do(core.Request{Kind: core.ReqUntagUser, User: c.p.User})
	return err
}

// maxPageSize is the largest maxpagesize of a group listing (spec §7.7).
const maxPageSize = 200

type member struct {
	ConnectionID string  `json:"connectionId"`
	UserID       *string `json:"userId"`
}

type memberPage struct {
	Value    []member `json:"value"`
	NextLink *string  `json:"nextLink"`
}

// listGroup answers one page of the group's members in connection-id order. The continuation
// token is the last id of the previous page, base64url-encoded; top bounds the total over all
// pages and nextLink carries what remains of it.
func (h *handler) listGroup(c *call) error {
	pg, err := readPaging(c)
	if err != nil {
		return err
	}
	// The page of the whole cluster (see the Web PubSub listing).
	r, err := c.do(core.Request{Kind: core.ReqListGroup, Group: c.p.Group, After: pg.after, Limit: pg.limit})
	if err != nil {
		return err
	}
	got, more := r.Members, r.More
	page := memberPage{Value: make([]member, len(got))}
	for i, m := range got {
		page.Value[i].ConnectionID = m.ConnID
		if m.UserID != "" {
			page.Value[i].UserID = &got[i].UserID
		}
	}
	if len(got) > 0 {
		page.NextLink = h.nextLink(c, pg, more, len(got), got[len(got)-1].ConnID)
	}
	return c.reply(page)
}

// paging is a listing's query: maxpagesize, top (0: none), the page's
// size and the cursor its continuationToken carries.
type paging struct {
	size, top int64
	limit     int
	after     string
}

func readPaging(c *call) (paging, error) {
	size, _, err := c.query.Int("maxpagesize", 1, maxPageSize)
	if err != nil {
		return paging{}, err
	}
	if size == 0 {
		size = maxPageSize
	}
	top, _, err := c.query.Int("top", 1, math.MaxInt32)
	if err != nil {
		return paging{}, err
	}
	pg := paging{size: size, top: top, limit: int(size)}
	if tok := c.query.Get("continuationToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return paging{}, badRequest("continuationToken", "Invalid continuationToken %s.", excerpt.Quote(tok))
		}
		pg.after = string(b)
	}
	if top > 0 && top < size {
		pg.limit = int(top)
	}
	return pg, nil
}

// nextLink returns the link to the page after one of n entries ending at
// last, nil when no more follow or top is used up.
func (h *handler) nextLink(c *call, pg paging, more bool, n int, last string) *string {
	left := pg.top - int64(n) // > 0: top still allows more; top 0: no bound
	if !more || (pg.top != 0 && left <= 0) {
		return nil
	}
	q := url.Values{}
	for _, k := range []string{"api-version", "application"} {
		if v := c.query.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	q.Set("maxpagesize", strconv.FormatInt(pg.size, 10))
	if pg.top > 0 {
		q.Set("top", strconv.FormatInt(left, 10))
	}
	q.Set("continuationToken", base64.RawURLEncoding.EncodeToString([]byte(last)))
	link := h.baseURL(c) + c.r.URL.EscapedPath() + "?" + q.Encode()
	return &link
}

// maxTokenMinutes keeps minutesToExpire within a time.Duration.
const maxTokenMinutes = math.MaxInt64 / int64(time.Minute)

// generateToken mints a client access token for the internal hub: asrs.s.uid = userId,
// lifetime minutesToExpire (default 60), aud = endpoint + "/client/?hub=" + hub.
func (h *handler) generateToken(c *call) error {
	minutes, present, err := c.query.Int("minutesToExpire", 1, maxTokenMinutes)
	if err != nil {
		return err
	}
	if !present {
		minutes = 60
	}
	aud := auth.SignalRClientAudience(h.baseURL(c), c.hub.Name())
	token, err := h.keys.MintSignalRClientToken(aud, c.query.Get("userId"), time.Duration(minutes)*time.Minute)
	if err != nil {
		return answer(err, "")
	}
	return c.reply(struct {
		Token string `json:"token"`
	}{token})
}
