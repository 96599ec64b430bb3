// Package auth handles Switchboard's credentials: access keys, connection strings, the
// JWTs that clients and server SDKs present, reconnection tokens and webhook signatures; it
// knows no HTTP handlers, hubs or sockets.
//
// A [KeyRing] holds the access keys, primary first. Tokens are signed with the primary key
// and accepted when any key verifies them, so keys can be rotated by adding the new key as
// secondary, promoting it, then dropping the old one. As every Azure Web PubSub SDK does,
// the key's UTF-8 bytes are the HMAC key; the key is never base64-decoded.
//
// Start with [NewKeyRing] (or [LoadOrCreateKey] for a key kept in the data directory),
// then [KeyRing.VerifyClientToken] for WebSocket upgrades, [KeyRing.VerifyServerToken] for
// REST calls, and [KeyRing.Signature] for the ce-signature header of upstream webhooks.
//
// Every Verify method returns an error that wraps exactly one of [ErrTokenMissing],
// [ErrTokenMalformed], [ErrTokenSignature], [ErrTokenExpired], [ErrTokenAudience] or
// [ErrTokenAlgorithm], so the HTTP layer can answer 401 with a reason and count rejections
// by reason. A KeyRing is immutable and safe for concurrent use.
package auth
