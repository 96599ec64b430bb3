package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// TestOutboxSurvivesADatabaseRestart: PostgreSQL stopped (immediately: the connections
// break) and started again; the connector reconnects on its own, takes its partitions back
// and sends the rows inserted after, each once.
func TestOutboxSurvivesADatabaseRestart(t *testing.T) {
	dsn, db := outboxDB(t, 2)
	srv := startServer(t, configFile(t, outboxConnector("chat", dsn, `group: "conversation:{key}"`)))
	row := func(i int) map[string]any {
		return map[string]any{"partition_key": "c", "payload": []byte(fmt.Sprintf(`{"seq":%d}`, i))}
	}
	insert(t, db, row(0), row(1))
	waitFor(t, "the first rows are sent", func() bool { return len(history(t, srv.Endpoint(), "conversation:c")) == 2 })

	pgtest.Start(t).Restart(t)
	db = pgtest.Connect(t, dsn)
	insert(t, db, row(2), row(3))
	waitFor(t, "the rows inserted after the restart are sent", func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0
	})
	got := seqs(t, history(t, srv.Endpoint(), "conversation:c"))
	if fmt.Sprint(got) != "[0 1 2 3]" {
		t.Errorf("history %v, want [0 1 2 3]", got)
	}
	st := adminConnectors(t, srv.Endpoint())[0]
	if st.State != "running" || len(st.Held) != 2 || st.LastError == "" {
		t.Errorf("after the restart: state %s, %d partitions held, last error %q (want running, 2, the lost connection)", st.State, len(st.Held), st.LastError)
	}
}

// TestOutboxWaitsForItsTable: a server started before the outbox table exists reports it
// (state retrying, last_error naming the table and the schema command) and sends the rows
// once the table is made, without a restart.
func TestOutboxWaitsForItsTable(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	db := pgtest.Connect(t, dsn)
	srv := startServer(t, configFile(t, outboxConnector("chat", dsn, `group: "conversation:{key}"`)))
	waitFor(t, "the connector reports the missing table", func() bool {
		st := adminConnectors(t, srv.Endpoint())[0]
		return st.State == "retrying" && strings.Contains(st.LastError, "switchboard_outbox does not exist") &&
			strings.Contains(st.LastError, "connectors schema postgres")
	})
	ddl, err := outbox.Schema("switchboard_outbox", 2, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), ddl); err != nil {
		t.Fatal(err)
	}
	insert(t, db, map[string]any{"partition_key": "c", "payload": []byte(`{"seq":0}`)})
	waitFor(t, "the row is sent once the table exists", func() bool { return len(history(t, srv.Endpoint(), "conversation:c")) == 1 })
}
