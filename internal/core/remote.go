package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/odata"
)

// This file holds the operations that read or change a connection's state
// (group membership, permissions, existence) where the connection may be
// held by another node of a cluster. Hub.Do runs a Request on the node
// that holds the conn (a conn id starts with its node's id), or on every
// node for a user- or group-wide request. The seam is Router, an optional
// interface of the Broker found by type assertion: with the in-process
// broker (a single node) every request runs here. The node that receives a
// request from the Router runs it with Node.Answer. Core knows nothing of
// how requests travel.

// ReqKind is what a Request does.
type ReqKind uint8

// Request kinds. The first ones address one conn (Request.Conn), the others
// every node's conns.
const (
	ReqConnExists       ReqKind = iota + 1 // OK: the conn exists
	ReqJoin                                // add Conn to Group
	ReqLeave                               // remove Conn from Group
	ReqLeaveAll                            // remove Conn from every group
	ReqGrant                               // grant Perm over Group ("" every group) to Conn
	ReqRevoke                              // revoke Perm over Group from Conn
	ReqCheck                               // OK: Conn has Perm over Group
	ReqUserExists                          // OK: User has a conn
	ReqGroupExists                         // OK: Group has a member
	ReqAddUser                             // add User's conns to Group
	ReqRemoveUser                          // remove User's conns from Group ("" every group)
	ReqAddToGroups                         // add the conns Filter selects to Groups
	ReqRemoveFromGroups                    // remove the conns Filter selects from Groups
	ReqTagUser                             // TagUserGroup(User, Group, TTL, Persist)
	ReqUntagUser                           // UntagUserGroup(User, Group)
	ReqUserInGroup                         // OK: UserInGroup(User, Group)
	ReqListGroup                           // Members: ListGroup(Group, After, Limit)
	ReqDeliver                             // queue Data (whole frames in the conn's protocol) to Conn
	ReqInvoke                              // queue Data, an invocation with id ID, to Conn; Result: the client's answer within Wait
	ReqUserConns                           // Members: up to Limit of User's conns, oldest first, with their Connected times
	ReqListUsers                           // Users: ListUsers(Group, After, Limit)
	ReqPresence                            // Presence: the hub's counts
	ReqGroupState                          // States: GroupStates(Group)
	ReqInspect                             // State: Conn's user, groups, protocol and queue (the dashboard's inspector)
	numReqKinds
)

// Valid reports whether k is a known request kind.
func (k ReqKind) Valid() bool { return k >= ReqConnExists && k < numReqKinds }

// PerConn reports whether k addresses one conn (run by its node) rather
// than every node.
func (k ReqKind) PerConn() bool {
	return k >= ReqConnExists && k <= ReqCheck || k == ReqDeliver || k == ReqInvoke || k == ReqInspect
}

// Request is an operation on conns' state, run where the conns are.
type Request struct {
	Kind   ReqKind
	Hub    string
	Conn   string // per-conn kinds
	User   string
	Group  string
	Perm   Permission
	Groups []string      // ReqAddToGroups, ReqRemoveFromGroups
	Filter *odata.Filter // ReqAddToGroups, ReqRemoveFromGroups; nil: every conn
	// ReqTagUser: the tag's ttl (0: no expiry) and whether it is kept
	// for the user's future conns. Each node counts the ttl from when it
	// received the request.
	TTL     time.Duration
	Persist bool
	// ReqListGroup, ReqListUsers: the page's cursor (the last conn or
	// user id of the previous page; "" first) and size.
	After string
	Limit int
	// ReqDeliver, ReqInvoke: the frames, the invocation's id and how long
	// to wait for the client's answer.
	Data []byte
	ID   string
	Wait time.Duration
}

// Reply is a node's answer to a Request: OK for the checks, and the error
// the operation met (ErrConnNotFound, ErrUserNotFound, ErrGroupLimit, …).
type Reply struct {
	OK  bool
	Err error
	// ReqListGroup: up to Limit members after the cursor in conn-id
	// order, and whether more follow.
	Members []GroupMember
	More    bool
	// ReqListUsers: up to Limit users after the cursor in user-id
	// order, with their connection counts (and More as above).
	Users []UserPresence
	// Node is the id of the node that answered a ReqListUsers (for the
	// member notifications' seeding; not set on a merged reply).
	Node string
	// ReqPresence: the hub's counts.
	Presence *Presence
	// ReqGroupState: the group's state entries, in conn-id order.
	States []StateItem
	// ReqConnExists: the conn's protocol (Conn.Protocol).
	Protocol string
	// ReqInvoke: the client's answer.
	Result ClientResult
	// ReqInspect: the conn's state.
	State *ConnState
	// Await, when set, waits for the rest of the reply (ReqInvoke: the
	// client's answer) and returns it, or ctx's error; the node that runs
	// the request calls it off the path of other requests. It does not
	// travel.
	Await func(ctx context.Context) Reply
}

// Router carries Requests to other nodes. A clustered Broker implements it;
// the in-process one does not.
type Router interface {
	// Ask runs req on node and returns its reply; found is false when no
	// live node has that id. It fails (wrapping ErrBrokerUnavailable) when
	// the node could not be asked or did not answer in time.
	Ask(ctx context.Context, node string, req *Request) (r Reply, found bool, err error)
	// AskOthers runs req on every other live node and returns their
	// replies; it fails (wrapping ErrBrokerUnavailable) unless every one
	// answered (a node that left meanwhile does not count).
	AskOthers(ctx context.Context, req *Request) ([]Reply, error)
	// Settle waits (bounded) until the ops this node published before
	// the call were delivered here: Do calls it before it runs a request
	// on this node's conns, so that a request never overtakes a send the
	// node accepted before it. Ask and AskOthers do the same on the node
	// they ask.
	Settle(ctx context.Context)
}

// Answerer runs the Requests a Router receives for this node; *Node is one.
type Answerer interface {
	Answer(req *Request) Reply
}

var _ Answerer = (*Node)(nil)

// ConnNode returns the id of the node that holds the conn called id: the
// part before its first '_' ("" if none).
func ConnNode(id string) string {
	node, _, ok := strings.Cut(id, "_")
	if !ok {
		return ""
	}
	return node
}

// Do runs req (its Hub is set to h's name) where it must run: a per-conn
// request on the conn's node, another one on every node, whose replies it
// merges (see merge). Without a Router it runs here only. An error is the
// Router's: the request may not have run everywhere.
func (h *Hub) Do(ctx context.Context, req Request) (Reply, error) {
	req.Hub = h.name
	if !req.Kind.Valid() {
		return Reply{}, fmt.Errorf("core: unknown request kind %d", req.Kind)
	}
	rt, _ := h.node.cfg.Broker.(Router)
	if req.Kind.PerConn() {
		owner := ConnNode(req.Conn)
		if rt == nil || owner == h.node.cfg.NodeID || owner == "" {
			if rt != nil {
				rt.Settle(ctx)
			}
			r := h.answer(&req)
			if r.Await != nil {
				r = r.Await(ctx)
			}
			return r, nil
		}
		r, found, err := rt.Ask(ctx, owner, &req)
		if err != nil {
			return Reply{}, err
		}
		if !found {
			return Reply{Err: fmt.Errorf("%w: %q (no live node %q)", ErrConnNotFound, req.Conn, owner)}, nil
		}
		return r, nil
	}
	if rt != nil {
		rt.Settle(ctx)
	}
	local := h.answer(&req)
	if rt == nil {
		return local, nil
	}
	others, err := rt.AskOthers(ctx, &req)
	if err != nil {
		return Reply{}, err
	}
	switch req.Kind {
	case ReqListGroup:
		return mergePages(append(others, local), max(req.Limit, 1)), nil
	case ReqListUsers:
		return mergeUsers(append(others, local), max(req.Limit, 1)), nil
	case ReqPresence:
		return mergePresence(append(others, local)), nil
	case ReqGroupState:
		return mergeStates(append(others, local)), nil
	}
	if req.Kind == ReqUserConns {
		return mergeOldest(append(others, local), max(req.Limit, 1)), nil
	}
	return merge(req.Kind, append(others, local)), nil
}

// merge makes one reply of every node's: OK if any node's is; for
// ReqAddUser, ErrUserNotFound only if every node has no conn of the user;
// otherwise the first other error.
func merge(k ReqKind, rs []Reply) Reply {
	var out Reply
	userFound := false
	for _, r := range rs {
		out.OK = out.OK || r.OK
		if r.Err == nil || !errors.Is(r.Err, ErrUserNotFound) {
			userFound = true
		}
		if r.Err != nil && !errors.Is(r.Err, ErrUserNotFound) && out.Err == nil {
			out.Err = r.Err
		}
	}
	if k == ReqAddUser && !userFound && len(rs) > 0 {
		out.Err = rs[len(rs)-1].Err
	}
	return out
}

// Answer runs req on this node's conns; a hub the node does not hold
// answers as an empty one. Routers call it on the node a request was sent
// to.
func (n *Node) Answer(req *Request) Reply {
	h, err := n.ViewHub(req.Hub)
	if err != nil {
		return Reply{Err: err}
	}
	return h.answer(req)
}

// answer runs req on h's conns.
func (h *Hub) answer(req *Request) Reply {
	if req.Kind.PerConn() {
		c, err := h.Conn(req.Conn)
		if err != nil {
			return Reply{Err: err}
		}
		switch req.Kind {
		case ReqConnExists:
			return Reply{OK: true, Protocol: c.Protocol()}
		case ReqInspect:
			return Reply{OK: true, State: c.Inspect()}
		case ReqDeliver:
			c.Deliver(&Message{Type: Framed, Data: req.Data})
		case ReqInvoke:
			return startInvoke(c, req)
		case ReqJoin:
			return Reply{Err: h.JoinGroup(c, req.Group)}
		case ReqLeave:
			return Reply{Err: h.LeaveGroup(c, req.Group)}
		case ReqLeaveAll:
			h.LeaveAllGroups(c)
		case ReqGrant:
			c.Grant(req.Perm, req.Group)
		case ReqRevoke:
			c.Revoke(req.Perm, req.Group)
		case ReqCheck:
			return Reply{OK: c.Can(req.Perm, req.Group)}
		}
		return Reply{}
	}
	switch req.Kind {
	case ReqUserExists:
		return Reply{OK: h.UserExists(req.User)}
	case ReqGroupExists:
		return Reply{OK: h.GroupExists(req.Group)}
	case ReqAddUser:
		return Reply{Err: h.AddUserToGroup(req.User, req.Group)}
	case ReqRemoveUser:
		h.RemoveUserFromGroup(req.User, req.Group)
	case ReqAddToGroups:
		limited := 0
		h.EachConn(Target{Filter: req.Filter}, func(c *Conn) {
			for _, g := range req.Groups {
				if err := h.JoinGroup(c, g); err != nil {
					limited++
					break
				}
			}
		})
		if limited > 0 {
			h.node.log.Debug("addToGroups skipped conns at their group limit", "hub", h.name, "conns", limited)
		}
	case ReqTagUser:
		return Reply{Err: h.TagUserGroup(req.User, req.Group, req.TTL, req.Persist)}
	case ReqUntagUser:
		h.UntagUserGroup(req.User, req.Group)
	case ReqUserInGroup:
		return Reply{OK: h.UserInGroup(req.User, req.Group)}
	case ReqListGroup:
		page, more := h.ListGroup(req.Group, req.After, max(req.Limit, 1))
		return Reply{Members: page, More: more}
	case ReqUserConns:
		conns, more := h.localUserConns(req.User, max(req.Limit, 1))
		return Reply{Members: conns, More: more}
	case ReqListUsers:
		page, more := h.ListUsers(req.Group, req.After, max(req.Limit, 1))
		return Reply{Users: page, More: more, Node: h.node.cfg.NodeID}
	case ReqPresence:
		p := h.Presence()
		return Reply{Presence: &p}
	case ReqGroupState:
		return Reply{States: h.GroupStates(req.Group)}
	case ReqRemoveFromGroups:
		h.EachConn(Target{Filter: req.Filter}, func(c *Conn) {
			for _, g := range req.Groups {
				h.LeaveGroup(c, g)
			}
		})
	}
	return Reply{}
}

// mergePages merges the nodes' pages of a group listing: each is in conn-id
// order after one cursor, so the cluster's page is the first limit of their
// union in conn-id order (a conn id names its node, so there are no
// duplicates but a node's answering twice, dropped), and more follow if any
// node had more or the union is longer.
func mergePages(rs []Reply, limit int) Reply {
	var out Reply
	for _, r := range rs {
		out.Members = append(out.Members, r.Members...)
		out.More = out.More || r.More
		if r.Err != nil && out.Err == nil {
			out.Err = r.Err
		}
	}
	slices.SortFunc(out.Members, func(a, b GroupMember) int { return strings.Compare(a.ConnID, b.ConnID) })
	out.Members = slices.CompactFunc(out.Members, func(a, b GroupMember) bool { return a.ConnID == b.ConnID })
	if len(out.Members) > limit {
		out.Members, out.More = out.Members[:limit], true
	}
	return out
}

// mergeOldest merges the nodes' lists of a user's conns, each oldest first,
// into the oldest limit of them (more: some were left out).
func mergeOldest(rs []Reply, limit int) Reply {
	var out Reply
	for _, r := range rs {
		out.Members = append(out.Members, r.Members...)
		out.More = out.More || r.More
		if r.Err != nil && out.Err == nil {
			out.Err = r.Err
		}
	}
	slices.SortStableFunc(out.Members, compareAge)
	out.Members = slices.CompactFunc(out.Members, func(a, b GroupMember) bool { return a.ConnID == b.ConnID })
	if len(out.Members) > limit {
		out.Members, out.More = out.Members[:limit], true
	}
	return out
}

// compareAge orders conns oldest first, then by id (a tie-break every node
// agrees on).
func compareAge(a, b GroupMember) int {
	if c := a.Connected.Compare(b.Connected); c != 0 {
		return c
	}
	return strings.Compare(a.ConnID, b.ConnID)
}
