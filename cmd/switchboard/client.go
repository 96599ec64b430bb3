package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"github.com/switchboardhq/switchboard/internal/auth"
)

// target is how the shell commands find a server: a connection string, or
// the server's own configuration (its keys or the data directory's key).
type target struct {
	connString string
	cfg        configFlags
}

func (t *target) register(fs *pflag.FlagSet) {
	fs.StringVar(&t.connString, "connection-string", "", "connection string (default: $SWITCHBOARD_CONNECTION_STRING, else the server configuration)")
	t.cfg.register(fs)
}

// resolve returns the endpoint and key ring.
func (t *target) resolve() (string, *auth.KeyRing, error) { return t.resolveFor(false) }

// resolveFor returns the endpoint (the SignalR listener's when signalR and
// the endpoint comes from the server configuration) and key ring.
func (t *target) resolveFor(signalR bool) (string, *auth.KeyRing, error) {
	cs := t.connString
	if cs == "" {
		cs = os.Getenv(envConnectionString)
	}
	if cs != "" {
		endpoint, key, err := auth.ParseConnectionString(cs)
		if err != nil {
			return "", nil, err
		}
		ring, err := auth.NewKeyRing(key)
		return endpoint, ring, err
	}
	cfg, err := t.cfg.load()
	if err != nil {
		return "", nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	keys := cfg.Auth.AccessKeys
	if len(keys) == 0 {
		k, err := auth.LoadOrCreateKey(cfg.Server.DataDir)
		if err != nil {
			return "", nil, err
		}
		keys = []string{k}
	}
	ring, err := auth.NewKeyRing(keys...)
	if signalR {
		return cfg.SignalREndpoint(), ring, err
	}
	return cfg.Endpoint(), ring, err
}
