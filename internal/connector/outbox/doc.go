// Package outbox is the PostgreSQL outbox connector: an application inserts rows into an
// outbox table (Schema prints its DDL) in the transaction that changes its data, and the
// connector sends each row through connector.Deliverer, then deletes it (or marks it
// processed) in the transaction that locked it, only once its send was accepted. The table's
// partitions (a hash of each row's partition_key) are shared among the nodes running the
// connector with session advisory locks, held on one connection per node that also LISTENs
// for the table's NOTIFY; a partition's rows are sent in id order by the one worker of the
// node that holds it. A row's idempotency key (by default its table, partition and id) makes
// a row sent again after a crash a replay for history groups.
package outbox
