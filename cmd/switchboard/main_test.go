package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"

	"github.com/gobwas/ws/wsutil"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestTokenSendAndShutdown mints a client URL with `token`, connects with
// it, delivers a message with `send`, then shuts the server down and checks
// the client is told and closed with 1001.
func TestTokenSendAndShutdown(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	cs := srv.ConnectionString()
	out, err := run(t, "token", "--connection-string", cs, "--hub", "cli", "--user", "ann", "--group", "news")
	if err != nil {
		t.Fatal(err)
	}
	u := strings.TrimSpace(out)
	if !strings.HasPrefix(u, "ws://") || !strings.Contains(u, "/client/hubs/cli?access_token=") {
		t.Fatalf("token printed %q", u)
	}
	conn := wstest.Dial(t, u, "json.webpubsub.azure.v1")
	read := func() string { return string(conn.Read()) }
	if hello := read(); !strings.Contains(hello, `"event":"connected"`) || !strings.Contains(hello, `"userId":"ann"`) {
		t.Fatalf("hello = %s", hello)
	}
	if _, err := run(t, "send", "--connection-string", cs, "--hub", "cli", "--group", "news", "--type", "json", `{"n":1}`); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != `{"type":"message","from":"group","group":"news","dataType":"json","data":{"n":1}}` {
		t.Fatalf("group send arrived as %s", got)
	}
	if _, err := run(t, "send", "--connection-string", cs, "--hub", "cli", "--user", "ann", "plain"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != `{"type":"message","from":"server","dataType":"text","data":"plain"}` {
		t.Fatalf("user send arrived as %s", got)
	}
	if _, err := run(t, "send", "--connection-string", cs, "--hub", "9bad", "x"); err == nil {
		t.Fatal("send to an invalid hub succeeded")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	if got := read(); got != `{"type":"system","event":"disconnected","message":"server shutting down"}` {
		t.Fatalf("shutdown notice = %s", got)
	}
	_, _, err = conn.ReadErr()
	var ce wsutil.ClosedError
	if !errorsAs(err, &ce) || ce.Code != 1001 {
		t.Fatalf("want close 1001, got %v", err)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
}

func TestCheckConfigReportsEveryProblem(t *testing.T) {
	_, err := run(t, "serve", "--check-config", "--set", "limits.max_queue_bytes=0", "--set", "log.level=loud", "--addr", "nope")
	if err == nil {
		t.Fatal("invalid configuration accepted")
	}
	for _, key := range []string{"limits.max_queue_bytes", "log.level", "server.addr"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	out, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out, "switchboard ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// TestSignalRTokenNegotiates mints a SignalR redirect with `token --signalr`
// and follows it to the server's negotiate endpoint, as a SignalR client does.
func TestSignalRTokenNegotiates(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	cs := srv.SignalRConnectionString()
	if !strings.Contains(cs, ";Port=") {
		t.Fatalf("SignalR connection string %q has no Port part", cs)
	}
	out, err := run(t, "token", "--signalr", "--connection-string", cs, "--hub", "Chat", "--user", "ann")
	if err != nil {
		t.Fatal(err)
	}
	var redirect struct{ URL, AccessToken string }
	if err := json.Unmarshal([]byte(out), &redirect); err != nil {
		t.Fatalf("token printed %q: %v", out, err)
	}
	if redirect.URL != srv.SignalREndpoint()+"/client/?hub=Chat" || redirect.AccessToken == "" {
		t.Fatalf("redirect = %+v", redirect)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.SignalREndpoint()+"/client/negotiate?hub=Chat&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+redirect.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var neg struct {
		NegotiateVersion int
		ConnectionID     string
		ConnectionToken  string
	}
	if err := json.NewDecoder(resp.Body).Decode(&neg); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("negotiate: status %d, %v", resp.StatusCode, err)
	}
	if neg.NegotiateVersion != 1 || neg.ConnectionID == "" || neg.ConnectionToken == "" {
		t.Fatalf("negotiate answered %+v", neg)
	}
}

// TestTokenCheck: `token --check` prints what a minted token says and accepts it with the
// keys that signed it, and names the reason it refuses one for another hub or another key.
func TestTokenCheck(t *testing.T) {
	const cs = "Endpoint=http://localhost:8080;AccessKey=primary-access-key-for-the-check-test;Version=1.0;"
	tok, err := run(t, "token", "--connection-string", cs, "--hub", "chat", "--user", "ann", "--token-only")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)
	out, err := run(t, "token", "--connection-string", cs, "--check", tok)
	if err != nil || !strings.Contains(out, `"sub": "ann"`) || !strings.Contains(out, `kind: Web PubSub client token for hub "chat"`) ||
		!strings.Contains(out, "accepted:") {
		t.Errorf("check of a good token: %v\n%s", err, out)
	}
	for name, args := range map[string][]string{
		"another hub": {"--connection-string", cs, "--hub", "news"},
		"another key": {"--connection-string", strings.Replace(cs, "primary", "another", 1)},
	} {
		out, err := run(t, append([]string{"token", "--check", tok}, args...)...)
		want := map[string]string{"another hub": "token audience mismatch", "another key": "token signature invalid"}[name]
		if !errors.Is(err, errTokenRefused) || !strings.Contains(out, "refused: ") || !strings.Contains(out, want) {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

// TestConfigSampleChecks: the file `switchboard config` prints passes --check-config as it
// is, and a wrong value put into it is reported by key.
func TestConfigSampleChecks(t *testing.T) {
	out, err := run(t, "config")
	if err != nil || !strings.Contains(out, "shutdown_timeout: 10s") {
		t.Fatalf("config: %v\n%s", err, out)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "serve", "--check-config", "--config", good); err != nil {
		t.Errorf("the sample does not pass --check-config: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(out, "max_hubs: 10000", "max_hubs: -3", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "serve", "--check-config", "--config", bad); err == nil || !strings.Contains(err.Error(), "limits.max_hubs") {
		t.Errorf("a bad value in the sample: %v", err)
	}
}

// TestCheckConfigValidatesConnectors: --check-config reads the connectors: list and reports its
// problems by connector name, with the per-connector --set overrides applied.
func TestCheckConfigValidatesConnectors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`connectors:
  - name: accounts
    type: kafka
    brokers: ["127.0.0.1:9092"]
    topics: [account-updates]
    consumer_group: switchboard
    hub: accounts
    group: "customer:{key}"
`), 0o600)
	if out, err := run(t, "serve", "--check-config", "--config", file); err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("valid connector: %q %v", out, err)
	}
	_, err := run(t, "serve", "--check-config", "--config", file, "--set", "connectors.accounts.group=customer:{nope}",
		"--set", "connectors.accounts.sasl.mechanism=GSSAPI")
	for _, want := range []string{"connectors.accounts.group", "unknown placeholder {nope}", "connectors.accounts.sasl.mechanism"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// TestConnectorsSchemaPostgres: the schema command prints the outbox DDL for the table and
// partitions asked for, and refuses a table name the connector would refuse.
func TestConnectorsSchemaPostgres(t *testing.T) {
	out, err := run(t, "connectors", "schema", "postgres", "--table", "app.outbox", "--partitions", "16")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`CREATE TABLE IF NOT EXISTS "app"."outbox"`, "partitions=16", "pg_notify('app.outbox'", `"app"."outbox_dead_letter"`} {
		if !strings.Contains(out, want) {
			t.Errorf("DDL lacks %s:\n%s", want, out)
		}
	}
	if _, err := run(t, "connectors", "schema", "postgres", "--table", "Outbox"); err == nil {
		t.Error("an upper-case table name was accepted")
	}
}

// TestCheckConfigValidatesOutboxConnector: --check-config checks a postgres_outbox
// connector's keys.
func TestCheckConfigValidatesOutboxConnector(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(`connectors:
  - name: chat
    type: postgres_outbox
    dsn: "postgres://app:secret@127.0.0.1:5432/app"
    hub: chat
    group: "conversation:{key}"
`), 0o600)
	if out, err := run(t, "serve", "--check-config", "--config", file); err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("valid connector: %q %v", out, err)
	}
	_, err := run(t, "serve", "--check-config", "--config", file, "--set", "connectors.chat.processed=archive")
	if err == nil || !strings.Contains(err.Error(), "connectors.chat.processed") {
		t.Errorf("error does not name connectors.chat.processed: %v", err)
	}
}
