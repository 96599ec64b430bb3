package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestOutboxMapsColumnsInOrderAndSetsPoisonAside: rows are placed by their columns (target
// kind and target, hub, content type, headers) or by the connector's templates over
// partition_key and the payload's JSON; each conversation's rows reach its group's history
// in id order, once; a row the mapping cannot place (payload not JSON) is moved to the
// dead-letter table with its reason and deleted, and the rows behind it go on.
// With ordering: target, the same holds per conversation (rows to different groups go
// concurrently).
func TestOutboxMapsColumnsInOrderAndSetsPoisonAside(t *testing.T) {
	for _, ordering := range []string{"partition", "target"} {
		t.Run(ordering, func(t *testing.T) { testMapsColumns(t, ordering) })
	}
}

func testMapsColumns(t *testing.T, ordering string) {
	dsn, db := outboxDB(t, 4)
	srv := startServer(t, configFile(t, outboxConnector("chat", dsn, `group: "conversation:{value.conversation}"`,
		"dead_letter_table: switchboard_outbox_dead_letter", "ordering: "+ordering, "batch_size: 37")))
	const convs, per = 6, 50
	var rows []map[string]any
	for i := range per {
		for c := range convs {
			// Two conversations per partition key: rows of one partition go to several groups.
			rows = append(rows, map[string]any{"partition_key": fmt.Sprintf("k%d", c/2),
				"payload": []byte(fmt.Sprintf(`{"conversation":"c%d","seq":%d}`, c, i))})
		}
		if i == 10 { // a poison row in the middle of conversation c0's partition
			rows = append(rows, map[string]any{"partition_key": "k0", "payload": []byte(`{not json`)})
		}
	}
	// By columns: the target and content type of the row, whatever the templates say.
	rows = append(rows, map[string]any{"partition_key": "c1", "target_kind": "group", "target": "conversation:columns",
		"content_type": "text/plain", "payload": []byte("hello")},
		map[string]any{"partition_key": "c1", "headers": `{"switchboard-group": "conversation:headers"}`,
			"payload": []byte(`{"seq":7}`)})
	insert(t, db, rows...)

	waitFor(t, "every row is sent and deleted", func() bool {
		return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0
	})
	for c := range convs {
		got := seqs(t, history(t, srv.Endpoint(), fmt.Sprintf("conversation:c%d", c)))
		if len(got) != per {
			t.Errorf("conversation c%d: %d messages, want %d", c, len(got), per)
		}
		for i, s := range got {
			if s != i {
				t.Errorf("conversation c%d: message %d is seq %d: not each row once in id order: %v", c, i, s, got)
				break
			}
		}
	}
	if h := history(t, srv.Endpoint(), "conversation:columns"); len(h) != 1 || string(h[0].Data) != `"hello"` {
		t.Errorf("row placed by its columns: history %+v", h)
	}
	if h := seqs(t, history(t, srv.Endpoint(), "conversation:headers")); len(h) != 1 || h[0] != 7 {
		t.Errorf("row placed by its headers: history %v", h)
	}
	var reason, payload, connector string
	if err := db.QueryRow(context.Background(), "SELECT reason, convert_from(payload, 'UTF8'), connector FROM switchboard_outbox_dead_letter").
		Scan(&reason, &payload, &connector); err != nil {
		t.Fatalf("dead-letter table: %v", err)
	}
	if reason != "template" || payload != "{not json" || connector != "chat" {
		t.Errorf("dead letter: reason %q payload %q connector %q", reason, payload, connector)
	}
	st := adminConnectors(t, srv.Endpoint())
	if len(st) != 1 || st[0].Type != "postgres_outbox" || st[0].State != "running" || len(st[0].Held) != 4 || st[0].Partitions != 4 {
		t.Errorf("/admin/connectors: %+v", st)
	}
	if st[0].Records.Poison != 1 || st[0].Records.Sent != convs*per+2 {
		t.Errorf("counts %+v, want %d sent, 1 poison", st[0].Records, convs*per+2)
	}
}

// TestOutboxRowOverTheBodyLimitIsPoison: a row whose payload is larger than
// limits.max_body_bytes (what a REST send may carry) is not read: it is set aside as poison
// (reason data) and the rows behind it are sent.
func TestOutboxRowOverTheBodyLimitIsPoison(t *testing.T) {
	dsn, db := outboxDB(t, 1)
	srv := startServer(t, configFile(t, outboxConnector("chat", dsn, `group: "conversation:{key}"`,
		"dead_letter_table: switchboard_outbox_dead_letter")), "limits.max_body_bytes=1024")
	big := []byte(`{"seq":1,"pad":"` + strings.Repeat("x", 2000) + `"}`)
	insert(t, db, map[string]any{"partition_key": "c", "payload": []byte(`{"seq":0}`)})
	insert(t, db, map[string]any{"partition_key": "c", "payload": big})
	insert(t, db, map[string]any{"partition_key": "c", "payload": []byte(`{"seq":2}`)})
	waitFor(t, "every row is finished", func() bool { return count(t, db, "SELECT count(*) FROM switchboard_outbox") == 0 })
	if got := seqs(t, history(t, srv.Endpoint(), "conversation:c")); fmt.Sprint(got) != "[0 2]" {
		t.Errorf("history %v, want [0 2]", got)
	}
	var reason, msg string
	var size int
	if err := db.QueryRow(context.Background(), "SELECT reason, error, octet_length(payload) FROM switchboard_outbox_dead_letter").Scan(&reason, &msg, &size); err != nil {
		t.Fatal(err)
	}
	if reason != "data" || !strings.Contains(msg, "over the limit of 1024") || size != len(big) {
		t.Errorf("dead letter: %s %q, %d bytes", reason, msg, size)
	}
}
