// Package signalr speaks the client side of Azure SignalR Service in
// serverless mode: the negotiate endpoint, the three ASP.NET Core transports
// (WebSockets, Server-Sent Events, long polling) and the hub protocol (JSON
// and MessagePack, versions 1 and 2 with stateful reconnect). Client
// invocations go to the upstream webhooks; messages sent through the REST API
// reach clients through core, encoded once per protocol by this package's
// codecs.
package signalr
