package outbox

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// MaxPartitions bounds an outbox's partitions (each is an advisory lock and, on the node
// that holds it, a worker).
const MaxPartitions = 256

// DefaultPartitions is the partitions of the schema command's table when none is asked for.
const DefaultPartitions = 8

var tableName = regexp.MustCompile(`^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,45}$`)

// ValidTable reports whether t is a table name the connector accepts: lower-case letters,
// digits and '_', optionally schema-qualified (the suffixes the DDL adds keep every name
// within PostgreSQL's 63 bytes).
func ValidTable(t string) bool { return tableName.MatchString(t) }

// name is a table name split into schema (may be empty) and table.
type name struct{ schema, table string }

func parseName(t string) name {
	if s, tb, ok := strings.Cut(t, "."); ok {
		return name{s, tb}
	}
	return name{"", t}
}

// ident is a (possibly schema-qualified) identifier with the table's name plus suffix, quoted.
func (n name) ident(suffix string) string {
	if n.schema == "" {
		return pgx.Identifier{n.table + suffix}.Sanitize()
	}
	return pgx.Identifier{n.schema, n.table + suffix}.Sanitize()
}

// channel is the LISTEN/NOTIFY channel of the outbox: the table name as configured.
func (n name) channel() string {
	if n.schema == "" {
		return n.table
	}
	return n.schema + "." + n.table
}

// commentPrefix starts the table comment the DDL writes; the connector reads its partition
// count from it.
const commentPrefix = "switchboard outbox: partitions="

// Schema returns the DDL of an outbox table with the given partitions, its index and its
// NOTIFY trigger, and, when deadLetter is not empty, of its dead-letter table.
func Schema(table string, partitions int, deadLetter string) (string, error) {
	if !ValidTable(table) {
		return "", fmt.Errorf("outbox table %q: lower-case letters, digits and '_', optionally schema.table", table)
	}
	if deadLetter != "" && !ValidTable(deadLetter) {
		return "", fmt.Errorf("dead-letter table %q: lower-case letters, digits and '_', optionally schema.table", deadLetter)
	}
	if partitions < 1 || partitions > MaxPartitions {
		return "", fmt.Errorf("partitions %d: 1 to %d", partitions, MaxPartitions)
	}
	n := parseName(table)
	t := n.ident("")
	var b strings.Builder
	fmt.Fprintf(&b, `-- Switchboard outbox %[2]s: insert a row in the transaction that changes your data; Switchboard
-- sends it and deletes it (or sets processed_at) once the send was accepted.
CREATE TABLE IF NOT EXISTS %[1]s (
    id              bigserial PRIMARY KEY,
    -- rows with the same partition_key are sent in id order ({key} in templates); NULL: partition 0
    partition_key   text,
    partition       integer NOT NULL GENERATED ALWAYS AS (
                        CASE WHEN partition_key IS NULL THEN 0
                        ELSE mod(hashtext(partition_key)::bigint + 2147483648, %[3]d)::integer END) STORED,
    hub             text,       -- NULL: the connector's hub
    target_kind     text CHECK (target_kind IN ('group', 'user', 'connection', 'all')), -- NULL: the connector's target
    target          text,       -- the group, user or connection id
    content_type    text,       -- application/json, text/plain, application/octet-stream; NULL: the connector's
    payload         bytea NOT NULL DEFAULT ''::bytea, -- the message (convert_to(json::text, 'UTF8') from SQL)
    idempotency_key text,       -- NULL: the connector's idempotency_key (default: the table, partition and id)
    excluded        text[],     -- connection ids left out
    headers         jsonb CHECK (headers IS NULL OR jsonb_typeof(headers) = 'object'), -- more switchboard-* headers
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    processed_at    timestamptz, -- set instead of deleting the row with processed: mark
    CHECK (target_kind IS NULL AND target IS NULL OR target_kind = 'all' AND target IS NULL
           OR target_kind <> 'all' AND target IS NOT NULL)
);
COMMENT ON TABLE %[1]s IS '%[4]s%[3]d';
CREATE INDEX IF NOT EXISTS %[5]s ON %[1]s (partition, id) WHERE processed_at IS NULL;
CREATE OR REPLACE FUNCTION %[6]s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(%[7]s, NEW.partition::text);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER %[8]s AFTER INSERT ON %[1]s FOR EACH ROW EXECUTE FUNCTION %[6]s();
`, t, table, partitions, commentPrefix, pgx.Identifier{n.table + "_pending"}.Sanitize(), n.ident("_notify"),
		quoteLiteral(n.channel()), pgx.Identifier{n.table + "_notify"}.Sanitize())
	if deadLetter != "" {
		fmt.Fprintf(&b, `
-- Poison rows (the mapping cannot place them), moved here with the reason.
CREATE TABLE IF NOT EXISTS %s (
    id              bigint PRIMARY KEY, -- the outbox row's id
    partition_key   text,
    partition       integer NOT NULL,
    hub             text,
    target_kind     text,
    target          text,
    content_type    text,
    payload         bytea NOT NULL,
    idempotency_key text,
    excluded        text[],
    headers         jsonb,
    created_at      timestamptz NOT NULL,
    connector       text NOT NULL,
    reason          text NOT NULL, -- hub, target, template, content_type, data, header, refused
    error           text NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
`, parseName(deadLetter).ident(""))
	}
	return b.String(), nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// partitionsOf reads the partition count from the table comment the DDL wrote.
func partitionsOf(comment string) (int, bool) {
	rest, ok := strings.CutPrefix(comment, commentPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil || n < 1 || n > MaxPartitions {
		return 0, false
	}
	return n, true
}
