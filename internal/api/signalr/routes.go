package signalr

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/switchboardhq/switchboard/internal/api/rest"
)

// apiGen is the generation of the REST API a path belongs to; the two answer the same
// operation with different status codes and error bodies (spec §7.3).
type apiGen uint8

const (
	genV1     apiGen = iota // /api/v1/…: 202s, plain-text errors
	genModern               // /api/… (2022-06-01 and later): 200/204s, ErrorDetail errors
)

// Operation names, the metrics label. They are the swagger operationIds, prefixed so that they
// never collide with the Web PubSub API's labels on a shared registry.
const (
	opUnknown                       = "SignalRService_Unknown"
	opHealth                        = "HealthApi_GetHealthStatus"
	opBroadcast                     = "SignalRService_Broadcast"
	opSendToUser                    = "SignalRService_SendToUser"
	opSendToConnection              = "SignalRService_SendToConnection"
	opSendToGroup                   = "SignalRService_SendToGroup"
	opConnectionExists              = "SignalRService_CheckConnectionExistence"
	opUserExists                    = "SignalRService_CheckUserExistence"
	opGroupExists                   = "SignalRService_CheckGroupExistence"
	opUserInGroup                   = "SignalRService_CheckUserExistenceInGroup"
	opCloseConnection               = "SignalRService_CloseConnection"
	opCloseAll                      = "SignalRService_CloseAllConnections"
	opCloseGroup                    = "SignalRService_CloseGroupConnections"
	opCloseUser                     = "SignalRService_CloseUserConnections"
	opAddConnectionToGroup          = "SignalRService_AddConnectionToGroup"
	opRemoveConnectionFromGroup     = "SignalRService_RemoveConnectionFromGroup"
	opRemoveConnectionFromAllGroups = "SignalRService_RemoveConnectionFromAllGroups"
	opAddUserToGroup                = "SignalRService_AddUserToGroup"
	opRemoveUserFromGroup           = "SignalRService_RemoveUserFromGroup"
	opRemoveUserFromAllGroups       = "SignalRService_RemoveUserFromAllGroups"
	opListGroup                     = "SignalRService_ListConnectionsInGroup"
	opGenerateToken                 = "SignalRService_GenerateClientToken"
	opExecute                       = "SignalRService_Execute"
	opInvoke                        = "SignalRService_InvokeConnection"
	opStreamSend                    = "SignalRService_SendToConnectionStream"
	opStreamComplete                = "SignalRService_CompleteConnectionStream"
	opAccessKey                     = "Auth_GetAccessKey"
	opGroupMessages                 = "SignalRService_GetGroupMessages" // Switchboard's catch-up read of a group's history
	opListUsersInGroup              = "SignalRService_ListUsersInGroup" // Switchboard's presence reads
	opListUsersInHub                = "SignalRService_ListUsersInHub"
	opHubPresence                   = "SignalRService_GetHubPresence"
)

// action is what one method does on one endpoint.
type action struct {
	op    string
	serve func(*handler, *call) error
	// ok is the success status under genV1 and genModern paths; 0 means serve writes the
	// whole answer itself.
	ok        [2]int
	anonymous bool
}

// endpoint is a path pattern below /api/ (or /api/v1/) and its actions by method; its
// variables are {hub}, {user}, {group}, {conn} and {stream}.
type endpoint struct {
	pattern string
	actions map[string]action
}

// endpoints returns the routes of spec §7.1, §7.3, §7.5 and §7.7, and Switchboard's catch-up
// read of a group's history. Every operation is served
// under both generations; both path orders of a membership are served; existence checks
// answer GET and HEAD.
func endpoints() []endpoint {
	const (
		get, head, post, put, del = http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete
		ok, accepted, noContent   = http.StatusOK, http.StatusAccepted, http.StatusNoContent
	)
	status := func(v1, modern int) [2]int { return [2]int{v1, modern} }
	do := func(op string, fn func(*handler, *call) error, ok [2]int) action {
		return action{op: op, serve: fn, ok: ok}
	}
	unsupported := func(op, what string) action {
		return action{op: op, serve: func(*handler, *call) error { return notSupported(what) }}
	}
	type methods = map[string]action

	health := action{op: opHealth, serve: func(*handler, *call) error { return nil }, ok: status(ok, ok), anonymous: true}
	broadcast := do(opBroadcast, (*handler).broadcast, status(accepted, accepted))
	toUser := do(opSendToUser, (*handler).sendToUser, status(accepted, accepted))
	toGroup := do(opSendToGroup, (*handler).sendToGroup, status(accepted, accepted))
	toConn := do(opSendToConnection, (*handler).sendToConnection, status(accepted, accepted))
	userExists := do(opUserExists, (*handler).userExists, status(ok, ok))
	groupExists := do(opGroupExists, (*handler).groupExists, status(ok, ok))
	connExists := do(opConnectionExists, (*handler).connectionExists, status(ok, ok))
	userInGroup := do(opUserInGroup, (*handler).userInGroup, status(ok, ok))
	userGroup := methods{
		get:  userInGroup,
		head: userInGroup,
		put:  do(opAddUserToGroup, (*handler).addUserToGroup, status(accepted, ok)),
		del:  do(opRemoveUserFromGroup, (*handler).removeUserFromGroup, status(accepted, noContent)),
	}
	connGroup := methods{
		put: do(opAddConnectionToGroup, (*handler).addConnectionToGroup, status(ok, ok)),
		del: do(opRemoveConnectionFromGroup, (*handler).removeConnectionFromGroup, status(ok, ok)),
	}

	table := []struct {
		path    string
		actions methods
	}{
		{"health", methods{get: health, head: health}},
		{"auth/accessKey", methods{get: unsupported(opAccessKey, "Getting a dynamic access key (Microsoft Entra ID)")}},

		{"hubs/{hub}", methods{post: broadcast}},
		{"hubs/{hub}/:send", methods{post: broadcast}},
		{"hubs/{hub}/:closeConnections", methods{post: do(opCloseAll, (*handler).closeAll, status(noContent, noContent))}},
		{"hubs/{hub}/:generateToken", methods{post: do(opGenerateToken, (*handler).generateToken, status(0, 0))}},
		{"hubs/{hub}/:execute", methods{post: do(opExecute, (*handler).execute, status(accepted, accepted))}},

		{"hubs/{hub}/users/{user}", methods{post: toUser, get: userExists, head: userExists}},
		{"hubs/{hub}/users/{user}/:send", methods{post: toUser}},
		{"hubs/{hub}/users/{user}/:closeConnections", methods{post: do(opCloseUser, (*handler).closeUser, status(noContent, noContent))}},
		{"hubs/{hub}/users/{user}/groups", methods{del: do(opRemoveUserFromAllGroups, (*handler).removeUserFromAllGroups, status(accepted, noContent))}},
		{"hubs/{hub}/users/{user}/groups/{group}", userGroup},
		{"hubs/{hub}/groups/{group}/users/{user}", userGroup},

		{"hubs/{hub}/groups/{group}", methods{post: toGroup, get: groupExists, head: groupExists}},
		{"hubs/{hub}/groups/{group}/:send", methods{post: toGroup}},
		{"hubs/{hub}/groups/{group}/:closeConnections", methods{post: do(opCloseGroup, (*handler).closeGroup, status(noContent, noContent))}},
		{"hubs/{hub}/groups/{group}/connections", methods{get: do(opListGroup, (*handler).listGroup, status(0, 0))}},
		{"hubs/{hub}/groups/{group}/users", methods{get: do(opListUsersInGroup, (*handler).listUsersInGroup, status(0, 0))}},
		{"hubs/{hub}/users", methods{get: do(opListUsersInHub, (*handler).listUsersInHub, status(0, 0))}},
		{"hubs/{hub}/presence", methods{get: do(opHubPresence, (*handler).presence, status(0, 0))}},
		{"hubs/{hub}/groups/{group}/messages", methods{get: do(opGroupMessages, (*handler).groupMessages, status(0, 0))}},
		{"hubs/{hub}/groups/{group}/connections/{conn}", connGroup},
		{"hubs/{hub}/connections/{conn}/groups/{group}", connGroup},

		{"hubs/{hub}/connections/{conn}", methods{
			post: toConn, get: connExists, head: connExists,
			del: do(opCloseConnection, (*handler).closeConnection, status(accepted, ok)),
		}},
		{"hubs/{hub}/connections/{conn}/:send", methods{post: toConn}},
		{"hubs/{hub}/connections/{conn}/groups", methods{del: do(opRemoveConnectionFromAllGroups, (*handler).removeConnectionFromAllGroups, status(ok, ok))}},
		{"hubs/{hub}/connections/{conn}/:invoke", methods{post: do(opInvoke, (*handler).invoke, status(0, 0))}},
		{"hubs/{hub}/connections/{conn}/streams/{stream}/:send", methods{post: do(opStreamSend, (*handler).streamSend, status(accepted, accepted))}},
		{"hubs/{hub}/connections/{conn}/streams/{stream}/:complete", methods{post: do(opStreamComplete, (*handler).streamComplete, status(accepted, accepted))}},
	}
	eps := make([]endpoint, len(table))
	for i, e := range table {
		eps[i] = endpoint{pattern: e.path, actions: e.actions}
	}
	return eps
}

// routes lists every method of every endpoint as a route.
func routes() []rest.Route[action] {
	var rs []rest.Route[action]
	for _, ep := range endpoints() {
		for _, m := range slices.Sorted(maps.Keys(ep.actions)) {
			rs = append(rs, rest.Route[action]{Method: m, Pattern: ep.pattern, Action: ep.actions[m]})
		}
	}
	return rs
}

// parsePath splits an escaped request path into its generation and the segments below
// /api/ or /api/v1/ (rest.SplitPath). ok is false for a path outside /api/.
func parsePath(escaped string) (gen apiGen, segs []string, ok bool, err error) {
	segs, ok, err = rest.SplitPath(escaped)
	if !ok || err != nil {
		return genModern, nil, ok, err
	}
	if strings.EqualFold(segs[0], "v1") {
		return genV1, segs[1:], true, nil
	}
	return genModern, segs, true, nil
}
