package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/pgtest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

const testKey = "outbox-connector-test-key"

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

// outboxDB makes a database with the outbox table (and its dead-letter table) of the
// schema command, and returns its DSN and a connection to it.
func outboxDB(t *testing.T, partitions int) (string, *pgx.Conn) {
	t.Helper()
	dsn := pgtest.Start(t).NewDatabase(t)
	conn := pgtest.Connect(t, dsn)
	ddl, err := outbox.Schema("switchboard_outbox", partitions, "switchboard_outbox_dead_letter")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), ddl); err != nil {
		t.Fatalf("DDL: %v\n%s", err, ddl)
	}
	return dsn, conn
}

// configFile writes a server configuration: hub chat keeps history for conversation:*
// groups, and the connectors given (YAML list items).
func configFile(t testing.TB, connectors string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	body := `hubs:
  chat:
    history:
      - {pattern: "conversation:*", max_messages: 100000, max_age: 1h}
connectors:
` + connectors
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// outboxConnector is the YAML of an outbox connector of dsn into hub chat.
func outboxConnector(name, dsn string, extra ...string) string {
	s := fmt.Sprintf(`  - name: %s
    type: postgres_outbox
    dsn: %q
    table: switchboard_outbox
    poll_interval: 200ms
    hub: chat
`, name, dsn)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func startServer(t testing.TB, cfgFile string, settings ...string) *servertest.Server {
	t.Helper()
	return servertest.Start(t, servertest.Options{ConfigFile: cfgFile,
		Settings: append([]string{"auth.access_keys=" + testKey, "history.fsync=none"}, settings...)})
}

// insert adds outbox rows: each a map of column to value.
func insert(t testing.TB, conn *pgx.Conn, rows ...map[string]any) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, r := range rows {
		var cols, ph []string
		var args []any
		for k, v := range r {
			cols = append(cols, k)
			args = append(args, v)
			ph = append(ph, "$"+strconv.Itoa(len(args)))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO switchboard_outbox ("+strings.Join(cols, ",")+") VALUES ("+strings.Join(ph, ",")+")", args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func count(t testing.TB, conn *pgx.Conn, query string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// entry is one message of a group's history, as the catch-up REST API answers it.
type entry struct {
	Offset uint64          `json:"offset"`
	Data   json.RawMessage `json:"data"`
}

// history reads a group's whole history through the catch-up REST API.
func history(t testing.TB, endpoint, group string) []entry {
	t.Helper()
	keys, _ := auth.NewKeyRing(testKey)
	var out []entry
	var after uint64
	for {
		u := fmt.Sprintf("%s/api/hubs/chat/groups/%s/messages", strings.TrimRight(endpoint, "/"), url.PathEscape(group))
		tok, _ := keys.MintServerToken(u, time.Hour)
		req, _ := http.NewRequest(http.MethodGet, u+"?api-version=2024-12-01&limit=1000&after="+strconv.FormatUint(after, 10), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("catch-up read of %s: %d %s", group, resp.StatusCode, b)
		}
		var page struct {
			Messages []entry `json:"messages"`
			NextLink *string `json:"nextLink"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatalf("catch-up read of %s: %v in %s", group, err, b)
		}
		out = append(out, page.Messages...)
		if page.NextLink == nil || len(page.Messages) == 0 {
			return out
		}
		after = page.Messages[len(page.Messages)-1].Offset
	}
}

// seqs returns the "seq" field of each entry.
func seqs(t testing.TB, es []entry) []int {
	t.Helper()
	out := make([]int, len(es))
	for i, e := range es {
		var v struct{ Seq int }
		if err := json.Unmarshal(e.Data, &v); err != nil {
			t.Fatalf("%s: %v", e.Data, err)
		}
		out[i] = v.Seq
	}
	return out
}

// adminConnectors reads /admin/connectors.
func adminConnectors(t testing.TB, endpoint string) []outbox.Status {
	t.Helper()
	keys, _ := auth.NewKeyRing(testKey)
	u := strings.TrimRight(endpoint, "/") + "/admin/connectors"
	tok, _ := keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Connectors []outbox.Status }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Connectors
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventually.True(t, what, 30*time.Second, cond)
}
