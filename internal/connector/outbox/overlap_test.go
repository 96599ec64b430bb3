package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// TestOutboxNextBatchSendsWhileCommitting: a batch's rows are sent while the previous batch's
// commit is still running (a trigger holds its DELETE on an advisory lock the test holds), so
// rows do not wait for the previous batch's commit; and when that commit fails, the batch
// after it is rolled back too: both are read again, their sends are replays, and every row is
// in the history once, in order, with the table empty at the end.
//
// Without the overlap the worker waits for the held commit, and the second batch never
// reaches the history while it is held.
func TestOutboxNextBatchSendsWhileCommitting(t *testing.T) {
	dsn, db := outboxDB(t, 1)
	ctx := context.Background()
	// The first DELETE's trigger fails once the lock is released (nextval is not rolled back).
	if _, err := db.Exec(ctx, `
CREATE SEQUENCE hold_seq;
CREATE FUNCTION hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(4242);
	IF nextval('hold_seq') = 1 THEN
		RAISE EXCEPTION 'injected commit failure';
	END IF;
	RETURN OLD;
END $$;
CREATE TRIGGER hold_delete BEFORE DELETE ON switchboard_outbox FOR EACH ROW EXECUTE FUNCTION hold_delete();`); err != nil {
		t.Fatal(err)
	}
	holder := pgtest.Connect(t, dsn)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
		t.Fatal(err)
	}
	d := newDirect(t, dsn)
	stop := d.run(outbox.Config{})
	defer func() { stop() }()
	row := func(n int) map[string]any {
		return map[string]any{"partition_key": "c", "payload": []byte(fmt.Sprintf(`{"seq":%d}`, n))}
	}
	inHistory := func() int {
		m, err := d.h.CatchUp("chat", "conversation:c", 0, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(m.Records)
	}
	insert(t, db, row(1), row(2))
	eventually.True(t, "the first batch is sent (its commit is then held)", 30*time.Second, func() bool { return inHistory() == 2 })
	insert(t, db, row(3), row(4))
	eventually.True(t, "the second batch is sent while the first one's commit is held", 30*time.Second, func() bool { return inHistory() == 4 })
	if n := count(t, db, "SELECT count(*) FROM switchboard_outbox"); n != 4 {
		t.Fatalf("%d rows in the table while the first commit is held, want 4", n)
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(4242)`); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "every row is finished after the failed commit", 30*time.Second, func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0
	})
	if n := count(t, db, "SELECT last_value FROM hold_seq"); n < 2 {
		t.Fatalf("the injected failure did not happen (hold_seq at %d)", n)
	}
	m, err := d.h.CatchUp("chat", "conversation:c", 0, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Records {
		got = append(got, string(r.Data))
	}
	if fmt.Sprint(got) != `[{"seq":1} {"seq":2} {"seq":3} {"seq":4}]` {
		t.Errorf("history %v, want seq 1 to 4, once each, in order", got)
	}
	// Both batches were read again: the second one's commit did not land on its own.
	if n := metrictest.Value(t, d.reg, "switchboard_connector_records_total", "connector", "chat", "result", "replayed"); n != 4 {
		t.Errorf("%v sends answered as replays, want 4 (both batches read again after the failed commit)", n)
	}
}
