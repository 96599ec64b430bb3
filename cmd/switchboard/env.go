package main

import (
	"log/slog"

	"github.com/switchboardhq/switchboard/internal/config"
)

// The environment variables the CLI itself reads, besides the server's
// settings (SWITCHBOARD_<SECTION>_<KEY>).
const (
	envConnectionString        = "SWITCHBOARD_CONNECTION_STRING"         // send, token, bench
	envSignalRConnectionString = "SWITCHBOARD_SIGNALR_CONNECTION_STRING" // bench signalr-*
)

// warnUnknownEnv logs the SWITCHBOARD_* variables of environ that are
// neither a setting nor read by the CLI: most likely a typo.
func warnUnknownEnv(log *slog.Logger, environ []string) {
	for _, k := range config.UnknownEnv(environ, envConnectionString, envSignalRConnectionString) {
		log.Warn("ignoring unknown environment variable", "name", k)
	}
}
