// Package connector turns records read from an event source (a Kafka partition, an outbox
// table) into sends to hubs, the way a REST :send with an Idempotency-Key does: the mapping
// (headers, then templates over the record's key and JSON value) and the delivery (through
// api/durable's Sender, retried while refused, poison records set aside). The sources are its
// subpackages (connector/kafka, connector/outbox); each commits a record only once Deliver returned for it.
package connector
