package webpubsub

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Operation names (the REST spec's operationIds), used as the metrics label.
const (
	opUnknown                       = "Unknown"
	opHealth                        = "HealthApi_GetServiceStatus"
	opSendToAll                     = "SendToAll"
	opCloseAllConnections           = "CloseAllConnections"
	opGenerateClientToken           = "GenerateClientToken"
	opAddConnectionsToGroups        = "AddConnectionsToGroups"
	opRemoveConnectionsFromGroups   = "RemoveConnectionsFromGroups"
	opCloseConnection               = "CloseConnection"
	opConnectionExists              = "ConnectionExists"
	opSendToConnection              = "SendToConnection"
	opRemoveConnectionFromAllGroups = "RemoveConnectionFromAllGroups"
	opGroupExists                   = "GroupExists"
	opCloseGroupConnections         = "CloseGroupConnections"
	opSendToGroup                   = "SendToGroup"
	opListConnectionsInGroup        = "ListConnectionsInGroup"
	opRemoveConnectionFromGroup     = "RemoveConnectionFromGroup"
	opAddConnectionToGroup          = "AddConnectionToGroup"
	opRevokePermission              = "RevokePermission"
	opCheckPermission               = "CheckPermission"
	opGrantPermission               = "GrantPermission"
	opUserExists                    = "UserExists"
	opCloseUserConnections          = "CloseUserConnections"
	opSendToUser                    = "SendToUser"
	opRemoveUserFromAllGroups       = "RemoveUserFromAllGroups"
	opRemoveUserFromGroup           = "RemoveUserFromGroup"
	opAddUserToGroup                = "AddUserToGroup"
	opGetGroupMessages              = "GetGroupMessages" // Switchboard's catch-up read of a group's history
)

// route is one operation: a method and a path pattern below /api/. Pattern
// segments are literals (matched ignoring ASCII case) or one of the
// variables {hub}, {group}, {user}, {conn} and {perm}.
type route struct {
	method    string
	pattern   []string
	op        string
	serve     func(*handler, *call) error
	anonymous bool
}

// params are the path variables of a matched route, percent-decoded.
type params struct {
	hub, group, user, conn, perm string
}

// routeTable returns the operations of spec §2.1.
func routeTable() []route {
	p := func(s string) []string { return strings.Split(s, "/") }
	return []route{
		{method: http.MethodHead, pattern: p("health"), op: opHealth, serve: (*handler).health, anonymous: true},
		{method: http.MethodGet, pattern: p("health"), op: opHealth, serve: (*handler).health, anonymous: true},

		{method: http.MethodPost, pattern: p("hubs/{hub}/:send"), op: opSendToAll, serve: (*handler).sendToAll},
		{method: http.MethodPost, pattern: p("hubs/{hub}/:closeConnections"), op: opCloseAllConnections, serve: (*handler).closeAll},
		{method: http.MethodPost, pattern: p("hubs/{hub}/:generateToken"), op: opGenerateClientToken, serve: (*handler).generateToken},
		{method: http.MethodPost, pattern: p("hubs/{hub}/:addToGroups"), op: opAddConnectionsToGroups, serve: (*handler).addToGroups},
		{method: http.MethodPost, pattern: p("hubs/{hub}/:removeFromGroups"), op: opRemoveConnectionsFromGroups, serve: (*handler).removeFromGroups},

		{method: http.MethodDelete, pattern: p("hubs/{hub}/connections/{conn}"), op: opCloseConnection, serve: (*handler).closeConnection},
		{method: http.MethodHead, pattern: p("hubs/{hub}/connections/{conn}"), op: opConnectionExists, serve: (*handler).connectionExists},
		{method: http.MethodPost, pattern: p("hubs/{hub}/connections/{conn}/:send"), op: opSendToConnection, serve: (*handler).sendToConnection},
		{method: http.MethodDelete, pattern: p("hubs/{hub}/connections/{conn}/groups"), op: opRemoveConnectionFromAllGroups, serve: (*handler).removeConnectionFromAllGroups},

		{method: http.MethodHead, pattern: p("hubs/{hub}/groups/{group}"), op: opGroupExists, serve: (*handler).groupExists},
		{method: http.MethodPost, pattern: p("hubs/{hub}/groups/{group}/:closeConnections"), op: opCloseGroupConnections, serve: (*handler).closeGroup},
		{method: http.MethodPost, pattern: p("hubs/{hub}/groups/{group}/:send"), op: opSendToGroup, serve: (*handler).sendToGroup},
		{method: http.MethodGet, pattern: p("hubs/{hub}/groups/{group}/connections"), op: opListConnectionsInGroup, serve: (*handler).listConnectionsInGroup},
		{method: http.MethodGet, pattern: p("hubs/{hub}/groups/{group}/messages"), op: opGetGroupMessages, serve: (*handler).groupMessages},
		{method: http.MethodDelete, pattern: p("hubs/{hub}/groups/{group}/connections/{conn}"), op: opRemoveConnectionFromGroup, serve: (*handler).removeConnectionFromGroup},
		{method: http.MethodPut, pattern: p("hubs/{hub}/groups/{group}/connections/{conn}"), op: opAddConnectionToGroup, serve: (*handler).addConnectionToGroup},

		{method: http.MethodDelete, pattern: p("hubs/{hub}/permissions/{perm}/connections/{conn}"), op: opRevokePermission, serve: (*handler).revokePermission},
		{method: http.MethodHead, pattern: p("hubs/{hub}/permissions/{perm}/connections/{conn}"), op: opCheckPermission, serve: (*handler).checkPermission},
		{method: http.MethodPut, pattern: p("hubs/{hub}/permissions/{perm}/connections/{conn}"), op: opGrantPermission, serve: (*handler).grantPermission},

		{method: http.MethodHead, pattern: p("hubs/{hub}/users/{user}"), op: opUserExists, serve: (*handler).userExists},
		{method: http.MethodPost, pattern: p("hubs/{hub}/users/{user}/:closeConnections"), op: opCloseUserConnections, serve: (*handler).closeUser},
		{method: http.MethodPost, pattern: p("hubs/{hub}/users/{user}/:send"), op: opSendToUser, serve: (*handler).sendToUser},
		{method: http.MethodDelete, pattern: p("hubs/{hub}/users/{user}/groups"), op: opRemoveUserFromAllGroups, serve: (*handler).removeUserFromAllGroups},
		{method: http.MethodDelete, pattern: p("hubs/{hub}/users/{user}/groups/{group}"), op: opRemoveUserFromGroup, serve: (*handler).removeUserFromGroup},
		{method: http.MethodPut, pattern: p("hubs/{hub}/users/{user}/groups/{group}"), op: opAddUserToGroup, serve: (*handler).addUserToGroup},
	}
}

// splitPath splits an escaped path under /api/ into segments and
// percent-decodes each one separately, so that an encoded '/' (%2F) stays
// inside its segment. One trailing '/' is ignored, as the service's routing
// and the token audience check do. A path outside /api/ gives no segments.
func splitPath(escaped string) ([]string, error) {
	rest, ok := strings.CutPrefix(escaped, "/api/")
	if !ok {
		return nil, nil
	}
	if len(rest) > 1 {
		rest = strings.TrimSuffix(rest, "/")
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if !strings.Contains(s, "%") {
			continue
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, badRequest("path", "Invalid percent-encoding in path segment %q.", s)
		}
		segs[i] = d
	}
	return segs, nil
}

// matchRoute finds the route for segs and method. When the path matches but
// the method does not, it returns the methods that would.
func matchRoute(routes []route, segs []string, method string) (*route, params, []string) {
	var allowed []string
	for i := range routes {
		rt := &routes[i]
		p, ok := matchPattern(rt.pattern, segs)
		if !ok {
			continue
		}
		if rt.method == method {
			return rt, p, nil
		}
		if !slices.Contains(allowed, rt.method) {
			allowed = append(allowed, rt.method)
		}
	}
	return nil, params{}, allowed
}

func matchPattern(pattern, segs []string) (params, bool) {
	var p params
	if len(pattern) != len(segs) {
		return p, false
	}
	for i, want := range pattern {
		got := segs[i]
		switch want {
		case "{hub}":
			p.hub = got
		case "{group}":
			p.group = got
		case "{user}":
			p.user = got
		case "{conn}":
			p.conn = got
		case "{perm}":
			p.perm = got
		default:
			if !strings.EqualFold(want, got) {
				return p, false
			}
		}
	}
	return p, true
}
