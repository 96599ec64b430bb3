// Package rest is the scaffolding both REST data planes (api/webpubsub and api/signalr) stand on:
// routing below /api/ with path variables, the strict query, body and path readers, the public base
// URL of links (the configured endpoint, else the forwarding headers, else the request), and the
// error mechanism (an Error answer and the lookup of an error in an API's table). What each API
// answers stays in its own package: its routes, its error tables and the format of its bodies.
package rest
