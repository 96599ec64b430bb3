package webpubsub

import (
	"net/http"

	"github.com/switchboardhq/switchboard/internal/api/rest"
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
	opListUsersInGroup              = "ListUsersInGroup" // Switchboard's presence reads
	opListUsersInHub                = "ListUsersInHub"
	opGetHubPresence                = "GetHubPresence"
)

// action is what one route does: its operation and the function that serves it.
type action struct {
	op        string
	serve     func(*handler, *call) error
	anonymous bool
}

// route is one operation: a method and a path pattern below /api/ whose
// variables are {hub}, {group}, {user}, {conn} and {perm}.
type route = rest.Route[action]

// routeTable returns the operations of spec §2.1.
func routeTable() []route {
	return []route{
		{Method: http.MethodHead, Pattern: "health", Action: action{op: opHealth, serve: (*handler).health, anonymous: true}},
		{Method: http.MethodGet, Pattern: "health", Action: action{op: opHealth, serve: (*handler).health, anonymous: true}},

		{Method: http.MethodPost, Pattern: "hubs/{hub}/:send", Action: action{op: opSendToAll, serve: (*handler).sendToAll}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/:closeConnections", Action: action{op: opCloseAllConnections, serve: (*handler).closeAll}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/:generateToken", Action: action{op: opGenerateClientToken, serve: (*handler).generateToken}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/:addToGroups", Action: action{op: opAddConnectionsToGroups, serve: (*handler).addToGroups}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/:removeFromGroups", Action: action{op: opRemoveConnectionsFromGroups, serve: (*handler).removeFromGroups}},

		{Method: http.MethodDelete, Pattern: "hubs/{hub}/connections/{conn}", Action: action{op: opCloseConnection, serve: (*handler).closeConnection}},
		{Method: http.MethodHead, Pattern: "hubs/{hub}/connections/{conn}", Action: action{op: opConnectionExists, serve: (*handler).connectionExists}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/connections/{conn}/:send", Action: action{op: opSendToConnection, serve: (*handler).sendToConnection}},
		{Method: http.MethodDelete, Pattern: "hubs/{hub}/connections/{conn}/groups", Action: action{op: opRemoveConnectionFromAllGroups, serve: (*handler).removeConnectionFromAllGroups}},

		{Method: http.MethodHead, Pattern: "hubs/{hub}/groups/{group}", Action: action{op: opGroupExists, serve: (*handler).groupExists}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/groups/{group}/:closeConnections", Action: action{op: opCloseGroupConnections, serve: (*handler).closeGroup}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/groups/{group}/:send", Action: action{op: opSendToGroup, serve: (*handler).sendToGroup}},
		{Method: http.MethodGet, Pattern: "hubs/{hub}/groups/{group}/connections", Action: action{op: opListConnectionsInGroup, serve: (*handler).listConnectionsInGroup}},
		{Method: http.MethodGet, Pattern: "hubs/{hub}/groups/{group}/users", Action: action{op: opListUsersInGroup, serve: (*handler).listUsersInGroup}},
		{Method: http.MethodGet, Pattern: "hubs/{hub}/users", Action: action{op: opListUsersInHub, serve: (*handler).listUsersInHub}},
		{Method: http.MethodGet, Pattern: "hubs/{hub}/presence", Action: action{op: opGetHubPresence, serve: (*handler).presence}},
		{Method: http.MethodGet, Pattern: "hubs/{hub}/groups/{group}/messages", Action: action{op: opGetGroupMessages, serve: (*handler).groupMessages}},
		{Method: http.MethodDelete, Pattern: "hubs/{hub}/groups/{group}/connections/{conn}", Action: action{op: opRemoveConnectionFromGroup, serve: (*handler).removeConnectionFromGroup}},
		{Method: http.MethodPut, Pattern: "hubs/{hub}/groups/{group}/connections/{conn}", Action: action{op: opAddConnectionToGroup, serve: (*handler).addConnectionToGroup}},

		{Method: http.MethodDelete, Pattern: "hubs/{hub}/permissions/{perm}/connections/{conn}", Action: action{op: opRevokePermission, serve: (*handler).revokePermission}},
		{Method: http.MethodHead, Pattern: "hubs/{hub}/permissions/{perm}/connections/{conn}", Action: action{op: opCheckPermission, serve: (*handler).checkPermission}},
		{Method: http.MethodPut, Pattern: "hubs/{hub}/permissions/{perm}/connections/{conn}", Action: action{op: opGrantPermission, serve: (*handler).grantPermission}},

		{Method: http.MethodHead, Pattern: "hubs/{hub}/users/{user}", Action: action{op: opUserExists, serve: (*handler).userExists}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/users/{user}/:closeConnections", Action: action{op: opCloseUserConnections, serve: (*handler).closeUser}},
		{Method: http.MethodPost, Pattern: "hubs/{hub}/users/{user}/:send", Action: action{op: opSendToUser, serve: (*handler).sendToUser}},
		{Method: http.MethodDelete, Pattern: "hubs/{hub}/users/{user}/groups", Action: action{op: opRemoveUserFromAllGroups, serve: (*handler).removeUserFromAllGroups}},
		{Method: http.MethodDelete, Pattern: "hubs/{hub}/users/{user}/groups/{group}", Action: action{op: opRemoveUserFromGroup, serve: (*handler).removeUserFromGroup}},
		{Method: http.MethodPut, Pattern: "hubs/{hub}/users/{user}/groups/{group}", Action: action{op: opAddUserToGroup, serve: (*handler).addUserToGroup}},
	}
}
