// Package kafka is the Kafka connector (also Azure Event Hubs through its Kafka endpoint): a
// consumer group member (github.com/twmb/franz-go) that hands each assigned partition to a
// worker of its own, which delivers the partition's records in order through
// connector.Deliverer and marks each for commit only once its send was accepted. Offsets are
// committed every commit interval, when partitions are revoked and at shutdown; a record
// redelivered after a crash or a rebalance carries the same idempotency key
// (topic/partition/offset), so the history has it once.
package kafka
