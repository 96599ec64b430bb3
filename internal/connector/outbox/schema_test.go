package outbox_test

import (
	"context"
	"testing"

	"github.com/switchboardhq/switchboard/internal/connector/outbox"
	"github.com/switchboardhq/switchboard/internal/pgtest"
)

// TestSchemaAppliesTwiceInASchema: the DDL of a schema-qualified table runs on PostgreSQL,
// twice (every statement is IF NOT EXISTS or OR REPLACE), and its partition column spreads
// keys over the partitions asked for (including a key whose hash is the smallest int4).
func TestSchemaAppliesTwiceInASchema(t *testing.T) {
	db := pgtest.Connect(t, pgtest.Start(t).NewDatabase(t))
	ctx := context.Background()
	ddl, err := outbox.Schema("app.outbox", 3, "app.outbox_dlq")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "CREATE SCHEMA app"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := db.Exec(ctx, ddl); err != nil {
			t.Fatalf("%v\n%s", err, ddl)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO app.outbox (partition_key, payload) SELECT 'k' || g, '{}' FROM generate_series(1, 300) g`); err != nil {
		t.Fatal(err)
	}
	var parts, lo, hi int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT partition), min(partition), max(partition) FROM app.outbox`).Scan(&parts, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if parts != 3 || lo != 0 || hi != 2 {
		t.Errorf("partitions %d from %d to %d, want 3 from 0 to 2", parts, lo, hi)
	}
	if _, err := db.Exec(ctx, `INSERT INTO app.outbox (target_kind, payload) VALUES ('group', '{}')`); err == nil {
		t.Error("a group row without a target was accepted")
	}
}
