package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const connectorsYAML = `
server:
  node_id: n1
connectors:
  - name: accounts
    type: kafka
    brokers: ["127.0.0.1:9092"]
    topics: ["account-updates"]
    consumer_group: switchboard
    hub: accounts
    group: "customer:{key}"
    sasl: {mechanism: PLAIN, user: "$ConnectionString", password: "Endpoint=sb://x/;SharedAccessKey=s3cret"}
    tls: {enabled: true}
`

func writeConfig(t *testing.T, s string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestConnectorsLoad(t *testing.T) {
	file := writeConfig(t, connectorsYAML)
	env := []string{"SWITCHBOARD_CONNECTORS_ACCOUNTS_BROKERS=a:9093,b:9093"}
	c, err := Load(file, env, []string{"connectors.accounts.start_offset=earliest"})
	if err != nil {
		t.Fatal(err)
	}
	k := c.Connectors[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"env overrides a list", strings.Join(k.Brokers, "|"), "a:9093|b:9093"},
		{"--set overrides a key", k.StartOffset, "earliest"},
		{"default session timeout", k.SessionTimeout, 10 * time.Second},
		{"default idempotency key", k.IdempotencyKey, "{topic}/{partition}/{offset}"},
		{"default content type", k.ContentType, "application/json"},
		{"default in flight", k.MaxInFlight, 1000},
		{"instance id from node id", c.ConnectorInstanceID(k), "n1-accounts"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	b, _ := json.Marshal(c.Redacted())
	if strings.Contains(string(b), "s3cret") {
		t.Errorf("/admin/config would show the SASL password: %s", b)
	}
	if c.Connectors[0].SASL.Password == "<redacted>" {
		t.Error("Redacted changed the original")
	}
	if u := UnknownEnv(env); len(u) != 0 {
		t.Errorf("connector override reported unknown: %v", u)
	}
}

func TestConnectorsValidation(t *testing.T) {
	base := strings.TrimSuffix(connectorsYAML, "    tls: {enabled: true}\n")
	for _, tc := range []struct {
		extra, want string
		set         []string
	}{
		{"", "", nil},
		{"    user: \"{key}\"\n", "alternatives", nil},
		{"    start_offset: middle\n", "start_offset", nil},
		{"    session_timeout: 45s\n", "session_timeout", nil},
		{"    idempotency_key: \"{nope}\"\n", "unknown placeholder", nil},
		{"    filter: \"userId eq\"\n", "connectors.accounts.filter", nil},
		{"    content_type: image/png\n", "content_type", nil},
		{"    tls: {ca_file: ca.pem}\n", "tls.enabled is false", nil},
		{"    topic_regex: true\n", "regular expression", []string{"connectors.accounts.topics=("}},
		{"  - name: accounts\n    type: kafka\n    brokers: [\"x:1\"]\n    topics: [t]\n    consumer_group: g\n", "two connectors", nil},
		{"  - name: chat\n    type: postgres_outbox\n", "connectors.chat.dsn: is required", nil},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n", "", nil},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n    table: Outbox\n", "connectors.chat.table", nil},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n    dead_letter_table: switchboard_outbox\n", "dead_letter_table", nil},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n    processed: archive\n", "not delete or mark", nil},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n    batch_size: 0\n", "", nil}, // 0: the default
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n", "batch_size", []string{"connectors.chat.batch_size=-1"}},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n", "workers", []string{"connectors.chat.workers=-1"}},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n", "workers", []string{"connectors.chat.workers=257"}},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: postgres://app@db/app\n", "poll_interval", []string{"connectors.chat.poll_interval=1ms"}},
		{"  - name: chat\n    type: postgres_outbox\n    dsn: \"postgres://app@db:notaport/app\"\n", "dsn: does not parse", nil},
		{"    dead_letter_topic: account-updates\n", "come back for ever", nil},
		{"    namespace: signalr\n", "invocation: is required", nil},
		{"    namespace: signalr\n    invocation: accountUpdated\n", "", nil},
		{"    namespace: signalr\n    invocation: accountUpdated\n", "needs the SignalR endpoint", []string{"signalr.addr="}},
		{"    invocation: accountUpdated\n", "is for namespace signalr", nil},
		{"    topic_regex: true\n    dead_letter_topic: account-updates-dlq\n", "come back for ever", nil},
		{"  - name: Bad-Name\n    type: mqtt\n", "connectors[1].name", nil},
	} {
		_, err := Load(writeConfig(t, base+tc.extra), nil, tc.set)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.extra, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error with %q", tc.extra, err, tc.want)
		}
	}
}

// TestOutboxDSNRedacted: /admin/config shows an outbox connector's DSN without its password,
// in the URL form and in the key=value form, and keeps the rest.
func TestOutboxDSNRedacted(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://app:s3cret@db:5432/app?sslmode=require": "postgres://app:<redacted>@db:5432/app?sslmode=require",
		"postgres://app@db/app?password=s3cret&x=1":         "postgres://app@db/app?password=<redacted>&x=1",
		"host=db user=app password='s3 cret' dbname=app":    "host=db user=app password=<redacted> dbname=app",
		"host=db user=app password=s3cret":                  "host=db user=app password=<redacted>",
		"postgres://app@db/app":                             "postgres://app@db/app",
	} {
		file := writeConfig(t, "connectors:\n  - name: chat\n    type: postgres_outbox\n    hub: chat\n    group: \"conversation:{key}\"\n")
		c, err := Load(file, []string{"SWITCHBOARD_CONNECTORS_CHAT_DSN=" + dsn}, nil)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		r := c.Redacted().Connectors[0].DSN
		if r != want || strings.Contains(r, "s3") {
			t.Errorf("%s: redacted to %s, want %s", dsn, r, want)
		}
		if c.Connectors[0].DSN != dsn {
			t.Error("Redacted changed the original")
		}
		if k := c.Connectors[0]; k.Table != "switchboard_outbox" || k.BatchSize != 500 || k.Processed != "delete" || k.PollInterval != time.Second {
			t.Errorf("outbox defaults: %+v", k)
		}
	}
}
