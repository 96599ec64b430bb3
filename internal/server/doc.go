// Package server assembles a running Switchboard from a config.Config: keys,
// node, broker, transports, dialects, REST APIs and admin routes on one HTTP
// listener, with graceful shutdown.
package server
