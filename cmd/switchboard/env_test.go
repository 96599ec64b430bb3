package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestServeWarnsOnlyOfUnknownEnv: serve warns of a SWITCHBOARD_* variable
// that nothing reads, but not of the connection strings the CLI's own
// commands read (it used to warn of SWITCHBOARD_SIGNALR_CONNECTION_STRING,
// which bench reads).
func TestServeWarnsOnlyOfUnknownEnv(t *testing.T) {
	var buf bytes.Buffer
	warnUnknownEnv(slog.New(slog.NewTextHandler(&buf, nil)), []string{
		"SWITCHBOARD_CONNECTION_STRING=Endpoint=http://localhost:8080;AccessKey=k;Version=1.0;",
		"SWITCHBOARD_SIGNALR_CONNECTION_STRING=Endpoint=http://localhost:8081;AccessKey=k;Version=1.0;",
		"SWITCHBOARD_LOG_LEVEL=debug",
		"SWITCHBOARD_NOPE=1",
		"HOME=/root",
	})
	logs := buf.String()
	if !strings.Contains(logs, "name=SWITCHBOARD_NOPE") {
		t.Errorf("no warning of SWITCHBOARD_NOPE:\n%s", logs)
	}
	if n := strings.Count(logs, "ignoring unknown environment variable"); n != 1 {
		t.Errorf("%d warnings, want the one of SWITCHBOARD_NOPE:\n%s", n, logs)
	}
}
