// Package webpubsub speaks the Azure Web PubSub client protocols: raw
// WebSocket frames (no subprotocol), json.webpubsub.azure.v1 and
// json.reliable.webpubsub.azure.v1. It authenticates client handshakes,
// decodes client requests into core operations and encodes core messages
// into frames.
package webpubsub
