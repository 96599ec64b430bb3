package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("server:\n  addr: \":9000\"\n  data_dir: /from/file\nlimits:\n  max_queue_bytes: 100\nwebsocket:\n  ping_interval: 5s\nhubs:\n  Lobby: {anonymous_connect: true}\n"), 0o600)
	env := []string{"SWITCHBOARD_SERVER_DATA_DIR=/from/env", "SWITCHBOARD_LIMITS_MAX_QUEUE_BYTES=200", "SWITCHBOARD_AUTH_ACCESS_KEYS=k1, k2", "PATH=/bin"}
	c, err := Load(file, env, []string{"limits.max_queue_bytes=300"})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file over default", c.Server.Addr, ":9000"},
		{"env over file", c.Server.DataDir, "/from/env"},
		{"flag over env", c.Limits.MaxQueueBytes, 300},
		{"duration from file", c.WebSocket.PingInterval, 5 * time.Second},
		{"default kept", c.Limits.MaxMessageBytes, 1 << 20},
		{"list from env", strings.Join(c.Auth.AccessKeys, "|"), "k1|k2"},
		{"hub settings case-insensitive", c.Hub("lobby").AnonymousConnect, true},
		{"other hubs default", c.Hub("chat").AnonymousConnect, false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("server:\n  adr: x\n"), 0o600)
	if _, err := Load(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "adr") {
		t.Errorf("unknown file key: %v", err)
	}
	env := []string{"SWITCHBOARD_NOPE=1", "SWITCHBOARD_CONNECTION_STRING=x", "SWITCHBOARD_LIMITS_MAX_BODY_BYTES=many"}
	if unknown := UnknownEnv(env, "SWITCHBOARD_CONNECTION_STRING"); len(unknown) != 1 || unknown[0] != "SWITCHBOARD_NOPE" {
		t.Errorf("UnknownEnv = %v", unknown)
	}
	_, err := Load("", env, []string{"log.level=loud", "x.y=1", "novalue"})
	for _, want := range []string{"SWITCHBOARD_LIMITS_MAX_BODY_BYTES", "x.y", "novalue"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	hubs := filepath.Join(dir, "hubs.yaml")
	os.WriteFile(hubs, []byte("hubs:\n  9bad: {anonymous_connect: true}\n"), 0o600)
	_, err = Load(hubs, nil, []string{"log.level=loud", "websocket.idle_timeout=1s", "server.public_endpoint=ftp://x"})
	for _, want := range []string{"log.level", "websocket.idle_timeout", "server.public_endpoint", "hubs.9bad"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not mention %s: %v", want, err)
		}
	}
}

// TestREADMEDocumentsEverySetting keeps the README's reference table in
// step with the Config struct.
func TestREADMEDocumentsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		row := "| `" + s.Key + "` | `" + s.Env + "` |"
		if !strings.Contains(string(b), row) {
			t.Errorf("README has no row for %s (%s)", s.Key, s.Env)
		}
	}
}

func TestEndpoint(t *testing.T) {
	c := Default()
	if got := c.Endpoint(); got != "http://localhost:8080" {
		t.Errorf("default endpoint %q", got)
	}
	c.Server.PublicEndpoint = "https://rt.example.com/"
	if got := c.Endpoint(); got != "https://rt.example.com" {
		t.Errorf("public endpoint %q", got)
	}
	if keys := c.Redacted().Auth.AccessKeys; len(keys) != 0 {
		t.Errorf("redacted keys %v", keys)
	}
}

func TestEventHandlerValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "h.yaml")
	os.WriteFile(file, []byte(`hubs:
  chat:
    event_handlers:
      - url_template: "http://127.0.0.1:9000/api/{hub}/{event}"
        user_events: ["*"]
        system_events: [connect, connected, disconnected]
        group_presence_events: [joined, Left]
        timeout: 5s
    max_connections_per_user: 1
    on_connection_limit: close_oldest
  bad:
    max_connections_per_user: -1
    on_connection_limit: kick
    event_handlers:
      - url_template: "http://{hub}.example.com/x"
        system_events: [opened]
        group_presence_events: [joined, moved]
      - url_template: "ftp://x"
      - user_events: ["a"]
`), 0o600)
	_, err := Load(file, nil, nil)
	for _, want := range []string{"placeholders are not allowed in the host", `system event "opened"`, `group presence event "moved"`, "hubs.bad.max_connections_per_user", `must be reject_new or close_oldest, got "kick"`, "not an http(s) URL", "url_template is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hubs.chat") {
		t.Errorf("valid handler rejected: %v", err)
	}
}

func TestSignalRUpstreamValidation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "s.yaml")
	os.WriteFile(file, []byte(`signalr:
  upstreams:
    - url_template: "http://127.0.0.1:7071/{hub}/api/{category}/{event}"
      hub_pattern: "*"
    - url_template: "http://{category}.example.com/x"
    - url_template: "ftp://x"
    - timeout: -1s
`), 0o600)
	_, err := Load(file, nil, nil)
	for _, want := range []string{"signalr.upstreams[1]: url_template \"http://{category}.example.com/x\": placeholders are not allowed in the host",
		"signalr.upstreams[2]: url_template \"ftp://x\" is not an http(s) URL", "signalr.upstreams[3]: url_template is required",
		"signalr.upstreams[3]: timeout -1s is negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "signalr.upstreams[0]") {
		t.Errorf("valid upstream rejected: %v", err)
	}
}

func TestHistoryValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "h.yaml")
	os.WriteFile(file, []byte(`history:
  fsync: sometimes
hubs:
  chat:
    history:
      - {pattern: "conversation:*", max_messages: 1000, max_age: 720h}
  bad:
    history:
      - {pattern: "", max_messages: 0, max_age: 0s}
`), 0o600)
	_, err := Load(file, nil, []string{"history.segment_bytes=10"})
	for _, want := range []string{"history.fsync", "history.segment_bytes", "hubs.bad.history[0].pattern", "hubs.bad.history[0].max_messages", "hubs.bad.history[0].max_age"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %s: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hubs.chat") {
		t.Errorf("valid rule rejected: %v", err)
	}
	c, err := Load("", []string{"SWITCHBOARD_HISTORY_FSYNC=always"}, nil)
	if err != nil || c.History.Fsync != "always" || c.History.MaxReplay != 500 {
		t.Errorf("history settings: %+v %v", c.History, err)
	}
}

// The rate limits are limits.* keys from the file (inline group), the
// environment (numbers with fractions) and flags; the trusted header needs
// its proxies.
func TestClientRates(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("limits:\n  ip_max_connections: 20\n  trusted_proxy_header: X-Forwarded-For\n  trusted_proxies: [10.0.0.0/8, \"::1\"]\n"), 0o600)
	c, err := Load(file, []string{"SWITCHBOARD_LIMITS_IP_HANDSHAKE_RATE=2.5"}, []string{"limits.conn_message_rate=0.5"})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Limits.ClientRates
	if r.IPMaxConnections != 20 || r.IPHandshakeRate != 2.5 || r.ConnMessageRate != 0.5 || r.IPMaxTracked != 100000 || r.TrustedProxyHeader != "X-Forwarded-For" {
		t.Fatalf("loaded %+v", r)
	}
	ps, err := r.TrustedProxyPrefixes()
	if err != nil || len(ps) != 2 || ps[0].String() != "10.0.0.0/8" || ps[1].String() != "::1/128" {
		t.Fatalf("trusted proxies %v, %v", ps, err)
	}
	d := Default()
	if d.Limits.IPHandshakeRate != 0 || d.Limits.IPMaxConnections != 0 || d.Limits.ConnMessageRate != 0 {
		t.Fatalf("the rate limits are not off by default: %+v", d.Limits.ClientRates)
	}

	_, err = Load("", nil, []string{"limits.trusted_proxy_header=X-Real-IP", "limits.ip_handshake_rate=-1", "limits.ip_max_tracked=0"})
	for _, want := range []string{"limits.trusted_proxies: required", "limits.ip_handshake_rate", "limits.ip_max_tracked"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not mention %s: %v", want, err)
		}
	}
	_, err = Load("", nil, []string{"limits.trusted_proxy_header=X-Real-IP", "limits.trusted_proxies=10.0.0.0/33"})
	if err == nil || !strings.Contains(err.Error(), "limits.trusted_proxies") {
		t.Errorf("a bad CIDR passed validation: %v", err)
	}
}

// TestPresenceNotifyValidation: presence_notify patterns are 1 to 1024
// characters, at most 64 per hub; valid ones load.
func TestPresenceNotifyValidation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	many := strings.Repeat(`"p", `, 65)
	os.WriteFile(file, []byte(`hubs:
  chat:
    presence_notify: ["room:*"]
  bad:
    presence_notify: ["", "`+strings.Repeat("x", 1025)+`"]
  lots:
    presence_notify: [`+strings.TrimSuffix(many, ", ")+`]
`), 0o600)
	_, err := Load(file, nil, nil)
	for _, want := range []string{"hubs.bad.presence_notify[0]", "hubs.bad.presence_notify[1]", "hubs.lots.presence_notify"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validation does not report %s: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hubs.chat") {
		t.Errorf("valid patterns rejected: %v", err)
	}
	os.WriteFile(file, []byte("hubs:\n  chat:\n    presence_notify: [\"room:*\", \"lobby\"]\n"), 0o600)
	c, err := Load(file, nil, nil)
	if err != nil || len(c.Hub("Chat").PresenceNotify) != 2 {
		t.Errorf("load: %+v %v", c.Hubs, err)
	}
}
