// Package hubproto implements the ASP.NET Core SignalR hub protocol as Azure SignalR Service
// (serverless) speaks it: the JSON handshake, the "json" and "messagepack" message encodings with
// their framing (0x1E record separator, VarInt length prefix), the server→client frames the service
// writes, and the bodies of REST sends (a JSON PayloadMessage or the SDK's MessagePack map of
// pre-framed per-protocol invocations).
//
// It is pure protocol: no HTTP, no sockets, no core types. Decoders take byte slices, never panic
// and never allocate more than their input justifies; encoders append to a caller-owned slice.
// Start with [ParseHandshake], [Lookup] and the [Protocol] interface ([JSON], [MessagePack]);
// REST callers use [ParsePayload] and [ParseVariants].
package hubproto
