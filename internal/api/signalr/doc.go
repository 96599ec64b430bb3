// Package signalr serves the Azure SignalR Service data-plane REST API (serverless mode) under
// /api/: the v1 routes (/api/v1/hubs/{hub}/…) and the 2022-06-01 … 2024-12-01 routes
// (/api/hubs/{hub}/…, with :send and :closeConnections verbs), each turned into core operations on
// the SignalR node. Sends carry hub-protocol payloads (package hubproto); adding a user to a group
// is a persisted user–group tag (core.Hub.TagUserGroup). Like the Web PubSub API it takes an
// Idempotency-Key on every send and serves the catch-up read of groups that keep history
// (package durable holds what the two share). The 2024-12-01 calls to one connection (:invoke and
// the server-to-client streams) queue frames in the conn's own hub protocol and wait for the
// client's answer through core.Conn.AwaitResult; :execute runs commands on an OData filter. errors.go is the one table from core errors to
// status codes, x-ms-error-code values and bodies.
package signalr
