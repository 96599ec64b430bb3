// Package history is the durable log of groups that keep history: retention
// policies by hub and group-name pattern, offsets and epochs per group stream,
// the embedded segment log (records framed with length and CRC32C, group
// commit, torn-tail recovery, background retention trimming), the
// idempotency index of REST sends, and the Service that core calls to append
// and replay. core declares the seam it consumes (core.History); Service
// implements it on top of a Log, which the embedded SegmentLog implements and
// a NATS JetStream store will implement later.
package history
